"""An HTTP request's ASGI scope as daphne hands it to the application, for tests that drive the
whole application in process (`asgiref.testing.ApplicationCommunicator`)."""


def http_scope(
    path: str,
    *,
    query: bytes = b"",
    headers: list[tuple[bytes, bytes]] = (),
    client: tuple[str, int] = ("127.0.0.1", 40000),
) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": [(b"host", b"127.0.0.1"), *headers],
        "client": client,
        "server": ("127.0.0.1", 8000),
    }
