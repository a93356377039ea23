"""Serve the platform with several daphne processes on one listening socket.

One daphne process runs one event loop on one core; a room of 2,000 viewers keeps that loop busy
writing frames. This launcher binds the port once and starts N daphne processes that accept on
the same socket (the kernel hands each new connection to one of them), so every core serves
sockets. The processes share nothing but the channel layer: each holds its own viewers and its
own room hubs, which is why more than one process needs Redis (``REDIS_URL``).

A process that dies is started again (after a short pause that grows while it keeps dying);
SIGTERM or SIGINT stops them all.

    python -m cloudbench.serve --workers 2 -b 0.0.0.0 -p 8000 [-- daphne options...]
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import socket
import subprocess
import sys
import time

logger = logging.getLogger("cloudbench.serve")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", type=int, default=int(os.environ.get("WEB_PROCESSES", "1")))
    p.add_argument("-b", "--bind", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=8000)
    p.add_argument("--application", default="asgi:application")
    p.add_argument("daphne_args", nargs=argparse.REMAINDER, help="passed on to daphne")
    args = p.parse_args(argv)
    if args.daphne_args[:1] == ["--"]:
        args.daphne_args = args.daphne_args[1:]
    if args.workers < 1:
        p.error("--workers must be at least 1")
    if args.workers > 1 and not os.environ.get("REDIS_URL"):
        p.error("more than one worker needs a shared channel layer: set REDIS_URL")
    return args


def listen(host: str, port: int) -> socket.socket:
    # IPv4: Twisted's fd endpoint adopts AF_INET sockets only (its string form cannot name
    # another family).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


class Supervisor:
    def __init__(self, args: argparse.Namespace, sock: socket.socket) -> None:
        self.args = args
        self.sock = sock
        self.procs: list[subprocess.Popen | None] = [None] * args.workers
        self.failures = [0] * args.workers
        self.started = [0.0] * args.workers
        self.stopping = False

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "cloudbench.webserver",
            "-e",
            f"fd:fileno={self.sock.fileno()}",
            *self.args.daphne_args,
            self.args.application,
        ]

    def start(self, i: int) -> None:
        self.procs[i] = subprocess.Popen(self.command(), pass_fds=[self.sock.fileno()])  # noqa: S603 - our own argv
        self.started[i] = time.monotonic()
        logger.info("web process %d started (pid %d)", i, self.procs[i].pid)

    def stop(self, *_: object) -> None:
        self.stopping = True
        for proc in self.procs:
            if proc is not None and proc.poll() is None:
                proc.terminate()

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        for i in range(len(self.procs)):
            self.start(i)
        while not self.stopping:
            time.sleep(0.5)
            for i, proc in enumerate(self.procs):
                if proc is None or proc.poll() is None or self.stopping:
                    continue
                if time.monotonic() - self.started[i] > 60:
                    self.failures[i] = 0  # it had been running well: not a crash loop
                self.failures[i] += 1
                pause = min(30.0, 0.5 * 2 ** min(self.failures[i], 6))
                logger.warning(
                    "web process %d (pid %d) exited with %s; starting it again in %.1f s",
                    i,
                    proc.pid,
                    proc.returncode,
                    pause,
                )
                time.sleep(pause)
                if not self.stopping:
                    self.start(i)
        deadline = time.monotonic() + 10
        for proc in self.procs:
            if proc is None:
                continue
            try:
                proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
        return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    sock = listen(args.bind, args.port)
    logger.info("listening on %s:%d with %d web processes", args.bind, args.port, args.workers)
    return Supervisor(args, sock).run()


if __name__ == "__main__":
    sys.exit(main())
