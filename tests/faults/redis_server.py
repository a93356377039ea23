"""A `redis-server` of one test or benchmark alone (Debian's binary), on a port of its own, that
may be stopped and started again. The machine's shared Redis is never touched."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import redis

REDIS_SERVER = os.environ.get(
    "REDIS_SERVER", shutil.which("redis-server") or "/usr/bin/redis-server"
)


class PrivateRedis:
    """A `redis-server` of this test alone, with the append-only file production uses
    (docker/compose.yaml), so stopping and starting it keeps what was queued."""

    def __init__(self, directory: Path, port: int) -> None:
        self.port = port
        self.directory = directory
        self.process: subprocess.Popen | None = None
        self.log = open(directory / "redis.log", "a")  # noqa: SIM115
        self.start()

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                REDIS_SERVER,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.directory),
                "--appendonly",
                "yes",
                "--save",
                "",
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        client = redis.Redis(port=self.port)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline or self.process.poll() is not None:
                    raise RuntimeError(f"redis-server did not start: see {self.log.name}") from None
                time.sleep(0.05)
            finally:
                client.close()

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
