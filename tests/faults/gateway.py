"""An SMS gateway on this machine for the fault tests: it records every hand-over and, like real
gateways, sends a message once per `Idempotency-Key`. It can hold a hand-over open (the sender
waits for the answer) so that a test can kill the sender in the middle of it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Gateway:
    def __init__(self) -> None:
        self.requests: list[dict] = []
        self.sent: dict[str, dict] = {}
        self.hold_first = threading.Event()
        self.release = threading.Event()
        self.lock = threading.Lock()
        gateway = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                key = self.headers.get("Idempotency-Key", "")
                with gateway.lock:
                    gateway.requests.append({"key": key, **body})
                    first = len(gateway.requests) == 1
                    # the worst case for the sender: the message goes out as soon as it arrives,
                    # before the sender hears back
                    gateway.sent.setdefault(key or f"no-key-{len(gateway.requests)}", body)
                if first and gateway.hold_first.is_set():
                    gateway.release.wait(60)
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(b'{"ok": true}')

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()
