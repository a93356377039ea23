"""Figures for personal files at rest: what encryption costs to keep and to serve a file.

For a 10 MB evidence upload and a 100 MB recording, each kept (its SHA-256 known) and then served
whole with the stored SHA-256 checked (the recording also as 1 MB range requests, as a video
player asks), in clear (FileSystemStorage, the upload hashed in a pass of its own, the file
streamed in 64 KiB blocks) and sealed (privacy.sealed: AES-256-GCM in 64 KiB chunks, hashed as it
is sealed; served by privacy.serve.sealed_response, as the routes do). Two sections:

- in-process: the storage layer alone, its responses consumed in this process. The plain path
  is a copy out of the page cache, so this shows what the cryptography itself costs per byte;
  the peak Python heap (tracemalloc) shows that nothing is loaded whole;
- over HTTP: the same, as a client sees it: `cloudbench.serve` (one daphne process, the
  project's settings and middleware) serving bench/files_http.py on 127.0.0.1, one keep-alive
  connection; the server's resident high-water mark is printed before and after;
- over HTTPS through the shipped nginx (docker/nginx.conf.template with TLS, in front of the
  same server), the path a resident's phone takes; when nginx is installed.

"first time": the file is stored again (and synced to the disk) before each timing, so nothing
about it is cached in the serving process; "again": the same file served repeatedly. Plain and
sealed alternate within each round, each going first in every other round, so both see the same
load; the load average is printed. Reported: throughput (MB/s) and ratio = sealed time / plain
time. Neither a database nor Redis is needed.

    python bench/files.py [--rounds 5] [--no-http] [--no-nginx]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import http.client
import os
import secrets
import shutil
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudbench.settings")
os.environ.setdefault("FILE_MASTER_KEY", base64.b64encode(secrets.token_bytes(32)).decode())

BENCH = Path(__file__).resolve().parent
MB = 1024 * 1024
# What a muxer hands its output: PyAV writes in blocks of about this size.
MUX_WRITE = 32 * 1024


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _peak(fn: Callable[[], object]) -> int:
    tracemalloc.start()
    tracemalloc.reset_peak()
    fn()
    _current, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak


def _consume(response) -> int:
    total = 0
    for block in response.streaming_content:
        total += len(block)
    response.close()
    return total


# --- over HTTP -------------------------------------------------------------------------------


def start_server(root: Path) -> tuple[subprocess.Popen, int, object]:
    """`cloudbench.serve` with one daphne process and no standby, serving bench/files_http.py
    over the files under ``root``; the embedded settings (no database or Redis is touched)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env["BENCH_FILES_ROOT"] = str(root)
    env["PYTHONPATH"] = f"{BENCH}:{BENCH.parent}"
    log = open(root / "server.log", "wb")  # noqa: SIM115 (closed by the caller)
    server = subprocess.Popen(
        [sys.executable, "-m", "cloudbench.serve", "--workers", "1", "--spares", "0"]
        + ["-p", str(port), "--application", "files_http:application", "--", "-v", "0"],
        cwd=BENCH.parent,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    _answering(server, HttpClient, port, 60, root / "server.log")
    return server, port, log


def _answering(process: subprocess.Popen, client, port: int, within: float, log: Path) -> None:
    """Wait until ``process`` answers an HTTP request on ``port``; else stop it and raise with
    the end of its log."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            client(port).get("/plain/files/none")
            return
        except OSError:
            if process.poll() is not None:
                break
            time.sleep(0.2)
    stop_server(process)
    raise RuntimeError(log.read_text()[-3000:])


def stop_server(server: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    try:
        server.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, signal.SIGKILL)
        server.wait()


def high_water_mark(server: subprocess.Popen) -> int:
    """The largest resident size the daphne process under ``server`` has had (VmHWM), bytes."""
    import psutil

    (daphne,) = psutil.Process(server.pid).children()
    for line in Path(f"/proc/{daphne.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM")


def start_nginx(root: Path, upstream: int) -> tuple[subprocess.Popen, int]:
    """The shipped nginx in front of the bench server: docker/nginx.conf.template rendered by
    docker/render.py as the deployment test renders it (TLS with a certificate made now), its
    HTTPS port on 127.0.0.1 proxying to ``upstream``."""
    from tests.deploy.stack import DOCKER, self_signed
    from tests.e2e.conftest import _free_port

    base = root / "nginx"
    (base / "tmp").mkdir(parents=True)
    cert, key = self_signed(base)
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "DOMAIN": "127.0.0.1",
        "HTTP_LISTEN": f"127.0.0.1:{_free_port()}",
        "HTTPS_LISTEN": f"127.0.0.1:{port}",
        "WEB_UPSTREAM": f"127.0.0.1:{upstream}",
        "HLS_ROOT": str(base),
        "STATIC_ROOT": str(base),
        "TLS_CERTIFICATE": str(cert),
        "TLS_CERTIFICATE_KEY": str(key),
        "NGINX_PID": str(base / "nginx.pid"),
        "NGINX_ERROR_LOG": str(base / "error.log"),
        "NGINX_ACCESS_LOG": str(base / "access.log"),
        "NGINX_TEMP": str(base / "tmp"),
    }
    conf = base / "nginx.conf"
    subprocess.run(
        [sys.executable, str(DOCKER / "render.py"), str(DOCKER / "nginx.conf.template"), str(conf)],
        check=True,
        env=env,
    )
    nginx = subprocess.Popen(
        ["nginx", "-c", str(conf), "-e", str(base / "error.log"), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _answering(nginx, lambda p: HttpClient(p, tls=True), port, 20, base / "error.log")
    return nginx, port


class HttpClient:
    """One keep-alive HTTP/1.1 connection (with ``tls``, HTTPS, the certificate not checked);
    bodies read into a reused 1 MiB buffer."""

    def __init__(self, port: int, *, tls: bool = False) -> None:
        if tls:
            context = ssl.create_default_context()
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
            self.connection = http.client.HTTPSConnection(
                "127.0.0.1", port, timeout=60, context=context
            )
        else:
            self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        self.buffer = bytearray(MB)

    def get(self, path: str, headers: dict | None = None) -> tuple[int, int]:
        self.connection.request("GET", path, headers=headers or {})
        return self._read(self.connection.getresponse())

    def post_file(self, path: str, name: str, data: bytes) -> tuple[int, int]:
        boundary = "benchfiles" + secrets.token_hex(8)
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{name}"\r\n'
            "Content-Type: application/pdf\r\n\r\n"
        ).encode()
        tail = f"\r\n--{boundary}--\r\n".encode()
        self.connection.putrequest("POST", path)
        self.connection.putheader("Content-Type", f"multipart/form-data; boundary={boundary}")
        self.connection.putheader("Content-Length", str(len(head) + len(data) + len(tail)))
        self.connection.endheaders()
        for part in (head, data, tail):
            self.connection.send(part)
        response = self.connection.getresponse()
        return response.status, len(response.read())

    def _read(self, response) -> tuple[int, int]:
        total = 0
        while read := response.readinto(self.buffer):
            total += read
        return response.status, total


def http_measure(
    client, measure, put, evidence, evidence_sha, recording, recording_sha, into
) -> None:
    """The same steps as in-process, as a client of the server sees them."""

    def keep(kind: str) -> Callable[[], object]:
        def run() -> None:
            status, _ = client.post_file(f"/{kind}/keep/", "evidence.pdf", evidence)
            assert status == 200, status

        return run

    def serve(kind: str, name: str, size: int, sha256: str = "", range_mb: int = 0):
        def run() -> None:
            url = f"/{kind}/files/{name}" + (f"?sha256={sha256}" if sha256 else "")
            if not range_mb:
                assert client.get(url) == (200, size)
                return
            step = range_mb * MB
            for start in range(0, size, step):
                end = min(size, start + step)
                got = client.get(url, {"Range": f"bytes={start}-{end - 1}"})
                assert got == (206, end - start), got

        return run

    over_http = {"into": into}
    measure(
        "10 MB evidence: keep (upload)", len(evidence), keep("plain"), keep("sealed"), **over_http
    )
    for label, name, data, sha, once in (
        ("10 MB evidence: serve whole, first time", "h-e.pdf", evidence, evidence_sha, False),
        ("10 MB evidence: serve whole again", "h-e2.pdf", evidence, evidence_sha, True),
        ("100 MB recording: serve whole, first time", "h-r.mp4", recording, recording_sha, False),
    ):
        measure(
            label,
            len(data),
            serve("plain", name, len(data)),
            serve("sealed", name, len(data), sha),
            put(name, data, once=once),
            **over_http,
        )
    measure(
        "100 MB recording: serve as 1 MB ranges",
        len(recording),
        serve("plain", "h-r.mp4", len(recording), range_mb=1),
        serve("sealed", "h-r.mp4", len(recording), range_mb=1),
        put("h-r.mp4", recording),
        **over_http,
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--no-http", dest="http", action="store_false", help="the storage layer in-process only"
    )
    parser.add_argument(
        "--no-nginx",
        dest="nginx",
        action="store_false",
        help="no section through the shipped nginx with TLS (it runs when nginx is installed)",
    )
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from django.core.files.base import ContentFile
    from django.core.files.storage import FileSystemStorage
    from django.test import RequestFactory
    from files_http import plain_response

    from privacy.sealed import SealedWriter
    from privacy.serve import sealed_response
    from privacy.storage import SealedStorage

    root = Path(tempfile.mkdtemp(prefix="bench-files-"))
    settings.MEDIA_ROOT = root
    for kind in ("plain", "sealed"):
        (root / kind).mkdir()
    plain_store, sealed_store = FileSystemStorage(location=root), SealedStorage(location=root)
    factory = RequestFactory()
    evidence = secrets.token_bytes(10 * MB)
    evidence_sha = hashlib.sha256(evidence).hexdigest()
    recording = secrets.token_bytes(100 * MB)
    recording_sha = hashlib.sha256(recording).hexdigest()
    rows: list[tuple[str, float, float, float, int, int]] = []
    http_rows: list[tuple[str, float, float, float, int, int]] = []
    nginx_rows: list[tuple[str, float, float, float, int, int]] = []
    load_before = os.getloadavg()

    def keep_evidence(sealed: bool) -> Callable[[], object]:
        """What keeping an upload takes: the file stored and its SHA-256 known (in clear the
        upload is hashed in a pass of its own; sealed, it is hashed as it is sealed)."""

        def run() -> None:
            if sealed:
                name = sealed_store.save("evidence.pdf", ContentFile(evidence))
                assert sealed_store.sha256(name) == evidence_sha
                sealed_store.delete(name)
                return
            upload = ContentFile(evidence)
            digest = hashlib.sha256()
            for chunk in upload.chunks():
                digest.update(chunk)
            assert digest.hexdigest() == evidence_sha
            plain_store.delete(plain_store.save("evidence.pdf", upload))

        return run

    def write_recording(sealed: bool) -> Callable[[], object]:
        # both hash what they write: the recorder stores the recording's SHA-256
        def run() -> None:
            path = root / "recording.mp4"
            path.unlink(missing_ok=True)
            view = memoryview(recording)
            if sealed:
                sink = SealedWriter(path)
                for at in range(0, len(recording), MUX_WRITE):
                    sink.write(view[at : at + MUX_WRITE])
                sink.close()
                return
            digest = hashlib.sha256()
            with open(path, "wb") as handle:
                for at in range(0, len(recording), MUX_WRITE):
                    digest.update(view[at : at + MUX_WRITE])
                    handle.write(view[at : at + MUX_WRITE])
            digest.hexdigest()

        return run

    def serve(
        name: str, sealed: bool, size: int, range_mb: int = 0, sha256: str | None = None
    ) -> Callable[[], object]:
        path = root / ("sealed" if sealed else "plain") / name

        def run() -> None:
            if not range_mb:
                if sealed:
                    # evidence is served with its stored SHA-256 checked, as the platform does
                    response = sealed_response(
                        factory.get("/"),
                        path,
                        content_type="video/mp4",
                        filename=name,
                        sha256=sha256,
                    )
                else:
                    response = plain_response(factory.get("/"), path)
                assert _consume(response) == size
                return
            step = range_mb * MB
            for start in range(0, size, step):
                header = f"bytes={start}-{min(size, start + step) - 1}"
                request = factory.get("/", HTTP_RANGE=header)
                if sealed:
                    response = sealed_response(
                        request, path, content_type="video/mp4", filename=name, ranges=True
                    )
                    _consume(response)
                else:  # the same response over the clear file: seek, stream the range
                    _consume(plain_response(request, path))

        return run

    def measure(
        label: str, size: int, plain: Callable, sealed: Callable, setup=None, *, into=rows
    ) -> None:
        times = {"plain": [], "sealed": []}
        peaks = {"plain": 0, "sealed": 0}
        for round_ in range(args.rounds):
            order = (("plain", plain), ("sealed", sealed))
            for kind, fn in order if round_ % 2 == 0 else order[::-1]:
                if setup:
                    setup(kind)
                times[kind].append(_timed(fn))
        for kind, fn in (("plain", plain), ("sealed", sealed)):
            if into is rows:  # the heap of this process: what serving in it holds
                if setup:
                    setup(kind)
                peaks[kind] = _peak(fn)
        plain_s, sealed_s = statistics.median(times["plain"]), statistics.median(times["sealed"])
        # the least disturbed run of each: on a loaded machine the closer to what it costs
        best = min(times["sealed"]) / min(times["plain"])
        into.append(
            (
                label,
                size / MB / plain_s,
                size / MB / sealed_s,
                best,
                peaks["plain"],
                peaks["sealed"],
            )
        )

    def put(name: str, data: bytes, once: bool = False) -> Callable[[str], None]:
        """Store the file before each timing (a new file: nothing about it is cached yet), or
        with ``once`` only before the first (served again: what a process keeps about a
        file it has opened helps)."""
        kept: set[str] = set()

        def setup(kind: str) -> None:
            path = root / kind / name
            if once and kind in kept:
                return
            kept.add(kind)
            path.unlink(missing_ok=True)
            if kind == "plain":
                path.write_bytes(data)
            else:
                with SealedWriter(path) as writer:
                    writer.write(data)
            # on the disk before it is timed: the kernel's writeback of a just-written 100 MB
            # file otherwise lands in whichever serve comes next
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)

        return setup

    measure(
        "10 MB evidence: keep (upload)",
        len(evidence),
        keep_evidence(False),
        keep_evidence(True),
    )
    measure(
        "10 MB evidence: serve whole, first time",
        len(evidence),
        serve("e.pdf", False, len(evidence), sha256=evidence_sha),
        serve("e.pdf", True, len(evidence), sha256=evidence_sha),
        put("e.pdf", evidence),
    )
    measure(
        "10 MB evidence: serve whole again",
        len(evidence),
        serve("e2.pdf", False, len(evidence), sha256=evidence_sha),
        serve("e2.pdf", True, len(evidence), sha256=evidence_sha),
        put("e2.pdf", evidence, once=True),
    )
    measure(
        "100 MB recording: write while recording",
        len(recording),
        write_recording(False),
        write_recording(True),
    )
    measure(
        "100 MB recording: serve whole, first time",
        len(recording),
        serve("r.mp4", False, len(recording), sha256=recording_sha),
        serve("r.mp4", True, len(recording), sha256=recording_sha),
        put("r.mp4", recording),
    )
    measure(
        "100 MB recording: serve as 1 MB ranges",
        len(recording),
        serve("r.mp4", False, len(recording), range_mb=1),
        serve("r.mp4", True, len(recording), range_mb=1),
        put("r.mp4", recording),
    )

    server_memory = ""
    if args.http:
        server, port, log = start_server(root)
        try:
            client = HttpClient(port)
            high_water_start = high_water_mark(server)
            http_measure(
                client, measure, put, evidence, evidence_sha, recording, recording_sha, http_rows
            )
            if args.nginx and shutil.which("nginx"):
                nginx, nginx_port = start_nginx(root, port)
                try:
                    http_measure(
                        HttpClient(nginx_port, tls=True),
                        measure,
                        put,
                        evidence,
                        evidence_sha,
                        recording,
                        recording_sha,
                        nginx_rows,
                    )
                finally:
                    stop_server(nginx)
            server_memory = (
                f"server (one daphne process) resident high-water mark: "
                f"{high_water_start / MB:.0f} MB before, {high_water_mark(server) / MB:.0f} MB after"
            )
        finally:
            stop_server(server)
            log.close()

    load_after = os.getloadavg()
    print(
        f"median of {args.rounds} rounds, plain and sealed alternating in each round; "
        "peak = Python heap while doing it (tracemalloc)"
    )
    print(
        f"load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/"
        f"{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f} "
        f"on {os.cpu_count()} CPUs"
    )
    print(
        f"{'':42} {'plain MB/s':>11} {'sealed MB/s':>12} {'ratio':>6} {'best':>5} "
        f"{'peak plain':>11} {'peak sealed':>12}"
    )
    for label, plain, sealed, best, peak_plain, peak_sealed in rows:
        print(
            f"{label:42} {plain:11.0f} {sealed:12.0f} {plain / sealed:6.2f} {best:5.2f} "
            f"{peak_plain / 1024:9.0f}KB {peak_sealed / 1024:10.0f}KB"
        )

    def print_client_rows(title: str, client_rows: list) -> None:
        print()
        print(title)
        print(f"{'':42} {'plain MB/s':>11} {'sealed MB/s':>12} {'ratio':>6} {'best':>5}")
        for label, plain, sealed, best, _peak_plain, _peak_sealed in client_rows:
            print(f"{label:42} {plain:11.0f} {sealed:12.0f} {plain / sealed:6.2f} {best:5.2f}")

    if http_rows:
        print_client_rows(
            "over HTTP: cloudbench.serve on 127.0.0.1, one keep-alive connection "
            "(bench/files_http.py)",
            http_rows,
        )
        print(server_memory)
    if nginx_rows:
        print_client_rows(
            "over HTTPS through the shipped nginx (docker/nginx.conf.template, TLS, HTTP/1.1 "
            "client) to the same server",
            nginx_rows,
        )
    elif args.http and args.nginx:
        print("\n(no nginx on this machine: the section through the shipped nginx is skipped)")
    print("ratio: sealed time / plain time, of the medians; best: of the fastest run of each")
    shutil.rmtree(root)


if __name__ == "__main__":
    main()
