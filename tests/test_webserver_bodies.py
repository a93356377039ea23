"""`cloudbench.webserver` and HTTP bodies: a request body is held in memory (never in a
temporary file, where an upload would lie in clear) and bounded; a streamed response waits for a
slow client instead of piling up in the process; an upload takes a few copies of itself, which
are given back."""

import contextlib
import hashlib
import http.client
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from django.conf import settings

from tests.e2e.conftest import _free_port

MIB = 1024 * 1024
LIMIT = 4 * MIB


@contextlib.contextmanager
def _web_server(tmp_path: Path, application: str, env: dict) -> Iterator[tuple]:
    """`python -m cloudbench.webserver` serving ``application`` on a free port."""
    port = _free_port()
    log = open(tmp_path / "server.log", "wb")  # noqa: SIM115
    process = subprocess.Popen(
        [sys.executable, "-m", "cloudbench.webserver", "-b", "127.0.0.1", "-p", str(port)]
        + [application],
        cwd=settings.BASE_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            assert process.poll() is None and time.monotonic() < deadline, (
                tmp_path / "server.log"
            ).read_text()
            time.sleep(0.1)
    try:
        yield process, port
    finally:
        process.terminate()
        process.wait(timeout=10)
        log.close()


@pytest.fixture
def server(tmp_path):
    (tmp_path / "tmp").mkdir()
    env = {**os.environ, "REQUEST_BODY_MAX_BYTES": str(LIMIT), "TMPDIR": str(tmp_path / "tmp")}
    with _web_server(tmp_path, "tests.body_app:application", env) as running:
        yield running


def _post(port: int, headers: dict) -> http.client.HTTPConnection:
    """A POST to /upload whose headers are sent; the body is the caller's to send."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
    connection.putrequest("POST", "/upload")
    for name, value in headers.items():
        connection.putheader(name, value)
    connection.endheaders()
    return connection


def _files_open_by(pid: int) -> list[str]:
    return [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir() if fd.exists()]


def test_an_upload_is_held_in_memory_not_in_a_temporary_file(server, tmp_path):
    process, port = server
    body = os.urandom(3 * MIB)
    connection = _post(port, {"Content-Length": len(body)})
    connection.send(body[: 2 * MIB])  # the server holds two thirds of it now
    time.sleep(0.5)
    opened = _files_open_by(process.pid)
    connection.send(body[2 * MIB :])
    response = connection.getresponse()

    assert response.status == 200
    answer = json.loads(response.read())
    assert answer == {"length": len(body), "sha256": hashlib.sha256(body).hexdigest()}
    # Twisted would have put a body this size in an unlinked file in TMPDIR
    in_tmp = [f for f in opened if f.startswith(str(tmp_path / "tmp")) or "(deleted)" in f]
    assert not in_tmp, opened


def test_a_body_over_the_limit_is_refused_by_its_length_and_a_growing_one_when_it_passes(server):
    _process, port = server
    response = _post(port, {"Content-Length": LIMIT + 1}).getresponse()  # no byte of it sent
    assert response.status == 413 and b"larger than 4 MB" in response.read()

    connection = _post(port, {"Transfer-Encoding": "chunked"})
    chunk = os.urandom(MIB)
    sent = 0
    with contextlib.suppress(OSError):  # the server closes once it is too long
        for _ in range(16):
            connection.send(b"%x\r\n%s\r\n" % (len(chunk), chunk))
            sent += 1
    assert sent < 16
    with contextlib.suppress(OSError):  # the answer, unless the reset arrived first
        assert connection.getresponse().status == 413

    connection = _post(port, {"Content-Length": LIMIT})
    connection.send(bytes(LIMIT))
    assert connection.getresponse().status == 200  # the limit itself is allowed


def test_a_streamed_response_waits_for_a_slow_client(server):
    process, port = server
    before = psutil.Process(process.pid).memory_info().rss
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 256 * 1024)
    sock.settimeout(20)
    sock.connect(("127.0.0.1", port))
    sock.sendall(b"GET /stream/64 HTTP/1.1\r\nHost: x\r\n\r\n")
    received = len(sock.recv(MIB))
    time.sleep(1.5)  # the client reads nothing; the application could have sent it all by now
    held = psutil.Process(process.pid).memory_info().rss - before
    while chunk := sock.recv(MIB):
        received += len(chunk)
        if received >= 64 * MIB:
            break

    assert held < 16 * MIB, f"{held / MIB:.0f} MiB piled up for a client that read nothing"
    assert received >= 64 * MIB


@pytest.fixture
def evidence_server(tmp_path):
    """The web server with bench/files_http.py's application: evidence kept as the route keeps
    it (in memory, through Django's multipart parser, sealed), with the project's settings."""
    root = tmp_path / "files"
    for kind in ("plain", "sealed"):
        (root / kind).mkdir(parents=True)
    bench = Path(settings.BASE_DIR) / "bench"
    env = {**os.environ, "BENCH_FILES_ROOT": str(root), "PYTHONPATH": f"{bench}:{bench.parent}"}
    for name in ("MALLOC_MMAP_THRESHOLD_", "GLIBC_TUNABLES"):
        env.pop(name, None)
    with _web_server(tmp_path, "files_http:application", env) as running:
        yield running


def _keep(connection: http.client.HTTPConnection, data: bytes) -> dict:
    boundary = "evidence" + os.urandom(8).hex()
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="e.pdf"\r\n'
        "Content-Type: application/pdf\r\n\r\n"
    ).encode()
    tail = f"\r\n--{boundary}--\r\n".encode()
    connection.putrequest("POST", "/sealed/keep/")
    connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
    connection.putheader("Content-Length", str(len(head) + len(data) + len(tail)))
    connection.endheaders()
    for part in (head, data, tail):
        connection.send(part)
    response = connection.getresponse()
    assert response.status == 200
    return json.loads(response.read())


def _high_water_mark(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_an_evidence_upload_is_held_at_most_twice_and_gives_its_memory_back(evidence_server):
    """A 10 MB upload is held whole at most twice at a time (daphne's pieces of the body, then
    Django's copy of it; 19 MiB at the peak): the web server lets go of the body once daphne has
    queued it (29 MiB without that), the upload is sealed as the parser reads it (40 MiB when it
    was kept in memory first), and Twisted's own parse of the form, which daphne never reads, is
    off (141 MiB with it). Once kept, their pages go back to the system
    (`return_large_blocks_to_the_system`) instead of staying with the process a little more each
    time (150 MiB over these eleven without it)."""
    process, port = evidence_server
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    data = os.urandom(10 * MIB)
    before = psutil.Process(process.pid).memory_info().rss
    assert _keep(connection, data)["sha256"] == hashlib.sha256(data).hexdigest()
    peak = _high_water_mark(process.pid) - before
    after_first = psutil.Process(process.pid).memory_info().rss
    for _ in range(11):
        _keep(connection, data)
    grown = psutil.Process(process.pid).memory_info().rss - after_first

    # three whole copies of 10 MB are 28.6 MiB
    assert peak < 28 * MIB, f"{peak / MIB:.0f} MiB at the peak of one 10 MB upload"
    assert grown < 64 * MIB, f"grew by {grown / MIB:.0f} MiB over eleven more uploads"
