"""The shipped deployment as native processes on loopback: the files compose uses (nginx and
coturn templates rendered by docker/render.py with local addresses), a certificate made now,
and the commands of compose's services (cloudbench.serve with two processes, the media node, a
Celery worker and beat), against the test database and this run's Redis database."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings

from tests.e2e.conftest import ARTIFACTS, _database_url, _free_port, below_ephemeral

ROOT = Path(settings.BASE_DIR)
DOCKER = ROOT / "docker"


def port_range() -> tuple[int, int] | None:
    """``DEPLOY_PORTS=low-high``: the ports this stack listens and relays on (so that runs on a
    shared machine keep to their own), else any free ones."""
    value = os.environ.get("DEPLOY_PORTS", "")
    if not value:
        return None
    low, high = (int(p) for p in value.split("-"))
    return low, high


def free_tcp_ports(count: int) -> list[int]:
    """`count` ports free for TCP on 127.0.0.1: from ``DEPLOY_PORTS`` when it is set, else
    `_free_port`'s (from below the ephemeral range)."""
    span = port_range()
    if span is None:
        ports: list[int] = []
        while len(ports) < count:
            if (port := _free_port()) not in ports:
                ports.append(port)
        return ports
    ports = []
    for port in range(span[0], span[1] + 1):
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        ports.append(port)
        if len(ports) == count:
            return ports
    raise RuntimeError(f"no {count} free TCP ports in DEPLOY_PORTS={span}")


def free_udp_range(size: int) -> tuple[int, int]:
    """A run of `size` ports free for UDP on 127.0.0.1 (coturn's relay range): the top of
    ``DEPLOY_PORTS`` when it is set, else from below the ephemeral range."""
    span = port_range()
    if span is None:  # below the ephemeral range too: ICE's UDP sockets beside take from there
        low, high = below_ephemeral()
        bases = range(low + secrets.randbelow(high - low - 2000), high - size, size + 7)
    else:
        bases = [span[1] + 1 - size]
    for base in bases:
        socks = []
        try:
            for port in range(base, base + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
            return base, base + size - 1
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
    raise RuntimeError("no free UDP port range")


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and localhost, made at test time (openssl)."""
    cert, key = directory / "fullchain.pem", directory / "privkey.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    key.chmod(0o644)  # coturn and nginx workers read it
    return cert, key


@dataclass
class Proc:
    name: str
    argv: list[str]
    env: dict[str, str]
    log_dir: Path
    process: subprocess.Popen | None = None
    logs: list[Path] = field(default_factory=list)

    def start(self) -> None:
        log = self.log_dir / f"{self.name}-{len(self.logs)}.log"
        self.logs.append(log)
        with open(log, "w") as out:
            self.process = subprocess.Popen(
                self.argv,
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_text(self) -> str:
        return "\n".join(p.read_text(errors="replace") for p in self.logs if p.exists())


def insecure() -> ssl.SSLContext:
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def fetch(url: str, headers: dict[str, str] | None = None, timeout: float = 10):
    """(status, headers, body) of a GET over the self-signed HTTPS."""
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - https only
    try:
        with urllib.request.urlopen(request, timeout=timeout, context=insecure()) as r:  # noqa: S310
            return r.status, dict(r.headers), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Stack:
    def __init__(self, base: Path) -> None:
        self.base = base
        self.logs = ARTIFACTS.parent / "deploy-logs"
        self.logs.mkdir(parents=True, exist_ok=True)
        for old in self.logs.glob("*.log"):
            old.unlink()
        self.procs: dict[str, Proc] = {}
        ports = free_tcp_ports(5)
        self.http_port, self.https_port, self.web_port, self.turn_port, self.turns_port = ports
        self.relay = free_udp_range(60)
        self.url = f"https://127.0.0.1:{self.https_port}"
        self.secret = "turn-" + os.urandom(8).hex()
        self.media_root = base / "media"
        self.static_root = base / "static"
        self.rendered = base / "rendered"
        for d in (self.media_root / "hls", self.static_root, self.rendered, base / "nginx-tmp"):
            d.mkdir(parents=True, exist_ok=True)
        self.cert, self.key = self_signed(base)
        self.turn_log = self.logs / "coturn-relay.log"

    # -- configuration ---------------------------------------------------------------------

    def app_env(self) -> dict[str, str]:
        """The production variables (.env), with local addresses."""
        keep = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
        turn = [
            f"turn:127.0.0.1:{self.turn_port}?transport=udp",
            f"turn:127.0.0.1:{self.turn_port}?transport=tcp",
            f"turns:localhost:{self.turns_port}?transport=tcp",
        ]
        return {
            **keep,
            "PYTHONUNBUFFERED": "1",
            "DJANGO_DEBUG": "0",
            "HTTPS": "1",
            "DJANGO_SECRET_KEY": settings.SECRET_KEY,
            "FILE_MASTER_KEY": settings.FILE_MASTER_KEY,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            "CSRF_TRUSTED_ORIGINS": self.url,
            "SITE_URL": self.url,
            "DATABASE_URL": _database_url(),
            "REDIS_URL": settings.REDIS_URL,
            "CHANNEL_PREFIX": settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"],
            "CELERY_EAGER": "0",
            "MEDIA_NODE_INPROCESS": "0",
            "MEDIA_ROOT": str(self.media_root),
            "STATIC_ROOT": str(self.static_root),
            "BROADCAST_HLS_ROOT": str(self.media_root / "hls"),
            "TRUSTED_PROXIES": "127.0.0.1",
            "METRICS_ALLOWED_IPS": "127.0.0.1/32",
            "PROMETHEUS_MULTIPROC_DIR": str(self.base / "metrics"),
            "ICE_SERVERS": "[]",
            "TURN_URLS": ",".join(turn),
            "TURN_SHARED_SECRET": self.secret,
            "ICE_TRANSPORT_POLICY": "relay",
            "MEDIA_NODE_HEARTBEAT_TTL": "5",
        }

    def render_env(self) -> dict[str, str]:
        low, high = self.relay
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "DOMAIN": "127.0.0.1",
            "HTTPS_ORIGIN": self.url,
            "HTTP_LISTEN": f"127.0.0.1:{self.http_port}",
            "HTTPS_LISTEN": f"127.0.0.1:{self.https_port}",
            "WEB_UPSTREAM": f"127.0.0.1:{self.web_port}",
            "HLS_ROOT": str(self.media_root / "hls"),
            "STATIC_ROOT": str(self.static_root),
            "TLS_CERTIFICATE": str(self.cert),
            "TLS_CERTIFICATE_KEY": str(self.key),
            "NGINX_PID": str(self.base / "nginx.pid"),
            "NGINX_ERROR_LOG": str(self.logs / "nginx-error.log"),
            "NGINX_ACCESS_LOG": str(self.logs / "nginx-access.log"),
            "NGINX_TEMP": str(self.base / "nginx-tmp"),
            # coturn on loopback alone: it listens, relays and lets peers be on 127.0.0.1 only
            "TURN_LISTENING_IP": "127.0.0.1",
            "TURN_RELAY_IP": "127.0.0.1",
            "TURN_PORT": str(self.turn_port),
            "TURNS_PORT": str(self.turns_port),
            "TURN_MIN_PORT": str(low),
            "TURN_MAX_PORT": str(high),
            "TURN_SHARED_SECRET": self.secret,
            "TURN_TLS_CERTIFICATE": str(self.cert),
            "TURN_TLS_CERTIFICATE_KEY": str(self.key),
            "TURN_LOG_FILE": str(self.turn_log),
            "TURN_PEER_RULES": "\n".join(
                [
                    "allow-loopback-peers",
                    "allowed-peer-ip=127.0.0.1",
                    "denied-peer-ip=0.0.0.0-126.255.255.255",
                    "denied-peer-ip=128.0.0.0-255.255.255.255",
                    f"userdb={self.base / 'turndb'}",
                    f"pidfile={self.base / 'turnserver.pid'}",
                    "no-stdout-log",
                    "verbose",
                ]
            ),
        }

    def render(self) -> None:
        subprocess.run(
            [
                sys.executable,
                str(DOCKER / "render.py"),
                str(DOCKER / "nginx.conf.template"),
                str(self.rendered / "nginx.conf"),
                str(DOCKER / "turnserver.conf.template"),
                str(self.rendered / "turnserver.conf"),
            ],
            check=True,
            env=self.render_env(),
        )

    # -- processes (the commands of compose's services) ------------------------------------

    def add(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> Proc:
        proc = Proc(name, argv, env or self.app_env(), self.logs)
        self.procs[name] = proc
        proc.start()
        return proc

    def start(self) -> None:
        (self.base / "metrics").mkdir(exist_ok=True)
        self.render()
        py = sys.executable
        # What the image's build step collects: a copy of this run's collection, made by the same
        # `collectstatic` from the same sources (tests/conftest.py, `_collect_static_files`),
        # here where nginx's workers may read it.
        shutil.copytree(settings.STATIC_ROOT, self.static_root, dirs_exist_ok=True)
        self.add("coturn", ["turnserver", "-c", str(self.rendered / "turnserver.conf")])
        self.add(
            "nginx",
            ["nginx", "-c", str(self.rendered / "nginx.conf"), "-e",
             str(self.logs / "nginx-error.log"), "-g", "daemon off;"],
        )  # fmt: skip
        self.add(
            "web",
            [py, "-m", "cloudbench.serve", "--workers", "2", "-b", "127.0.0.1",
             "-p", str(self.web_port)],
        )  # fmt: skip
        self.add("media", [py, "manage.py", "medianode"])
        self.add(
            "worker",
            [py, "-m", "celery", "-A", "cloudbench", "worker", "--loglevel=INFO", "--concurrency=2",
             "-n", f"deploy-{os.getpid()}@%h"],
        )  # fmt: skip
        self.add(
            "beat",
            [py, "-m", "celery", "-A", "cloudbench", "beat", "--loglevel=INFO", "--scheduler",
             "django_celery_beat.schedulers:DatabaseScheduler",
             "--pidfile", str(self.base / "beat.pid")],
        )  # fmt: skip
        self.wait_ready(60)

    def wait_ready(self, within: float) -> dict:
        deadline = time.monotonic() + within
        body = {}
        while time.monotonic() < deadline:
            for name, proc in self.procs.items():
                if not proc.alive() and name != "media":
                    raise RuntimeError(f"{name} exited:\n{proc.log_text()[-3000:]}")
            try:
                status, _headers, raw = fetch(self.url + "/readyz", timeout=5)
                import json

                body = json.loads(raw or b"{}")
                if status == 200:
                    return body
            except (OSError, ValueError):
                pass
            time.sleep(0.5)
        raise RuntimeError(f"the stack is not ready after {within:.0f} s: {body}")

    def stop(self) -> None:
        for proc in reversed(list(self.procs.values())):
            proc.stop()
