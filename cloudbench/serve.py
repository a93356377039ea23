"""Serve the platform with several daphne processes on one listening socket.

One daphne process runs one event loop on one core; a room of 2,000 viewers keeps that loop busy
writing frames. This launcher binds the port once and starts N daphne processes that accept on
the same socket (the kernel hands each new connection to one of them), so every core serves
sockets. The processes share nothing but the channel layer: each holds its own viewers and its
own room hubs, which is why more than one process needs Redis (``REDIS_URL``).

A process that dies is replaced at once: by a standby (``--spares``, default one per process:
started up like the others but not accepting until told to), else by a fresh start (after a
pause that grows while it keeps dying before it is ready). A fresh start imports Django and
Channels and warms up: about 1.5 s of CPU, tens of seconds on a busy machine, while a standby
takes over in milliseconds; new standbys start once the reconnections have settled.

SIGHUP replaces the processes, as a deploy does: the new ones start beside the old ones, and once
every new one accepts on the socket the old ones stop accepting. One after the other, each old
one closes its WebSockets with the "reconnect now" code, a few at a time (the pages reconnect at
once, to a new process), lets requests finish and exits. A new process that does not become ready stops the
deploy and the old ones go on serving. SIGTERM or SIGINT stops them all the same way.

    python -m cloudbench.serve --workers 2 [--spares 2] -b 0.0.0.0 -p 8000 [-- daphne options...]
    kill -HUP <pid of serve>        # rolling restart, e.g. after a deploy
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import socket
import subprocess
import sys
import time

logger = logging.getLogger("cloudbench.serve")

# names the descriptor of a web process's end of its control socket (cloudbench.webserver)
CONTROL_ENV = "CLOUDBENCH_CONTROL_FD"
STANDBY_ENV = "CLOUDBENCH_STANDBY"
# The close code of a WebSocket whose process is being replaced while another one serves:
# "reconnect now, without backing off". The pages (live.js, watch.js, room.js, on_air.js,
# agreement_live.js) and the test clients know it; 4000 + HTTP's 503, as the consumers' codes
# (4403, 4404, 4429).
CLOSE_RESTART = 4503

# A process that was ready and served this long was not crash-looping: its death is restarted
# at once.
SERVED_WELL = 10.0
# Longer than a start-up on a busy machine (imports take about 2 s of CPU; a minute and more
# when the machine is loaded ten times over).
READY_LIMIT = 180.0
# A draining process closes its sockets in about a second and lets requests finish.
DRAIN_LIMIT = 15.0
# After a standby took over, new standbys wait this long: their start-up would take the CPU
# that the viewers reconnecting to the promoted process need.
SPARES_SETTLE = 15.0
TICK = 0.05
# daphne refuses a WebSocket that the application has not accepted within 5 s. After a crash,
# hundreds of viewers reconnect at once and a busy process takes longer than that: refusing
# them throws away the work done and brings them back for more (each refusal is a retry), so
# the process never catches up. A browser waits; so does the server, longer.
DAPHNE_DEFAULTS = ["--websocket_connect_timeout", "30"]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--workers", type=int, default=int(os.environ.get("WEB_PROCESSES", "1")))
    p.add_argument(
        "--spares",
        type=int,
        default=os.environ.get("WEB_SPARES") or None,
        help="standby processes (default: as many as --workers; each holds about 200 MB)",
    )
    p.add_argument("-b", "--bind", default="127.0.0.1")
    p.add_argument("-p", "--port", type=int, default=8000)
    p.add_argument("--application", default="asgi:application")
    p.add_argument("daphne_args", nargs=argparse.REMAINDER, help="passed on to daphne")
    args = p.parse_args(argv)
    if args.daphne_args[:1] == ["--"]:
        args.daphne_args = args.daphne_args[1:]
    if args.workers < 1:
        p.error("--workers must be at least 1")
    args.spares = args.workers if args.spares is None else int(args.spares)
    if args.spares < 0:
        p.error("--spares cannot be negative")
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


class Child:
    """One daphne process, and the Unix socket it says ``ready`` on and is told ``drain`` on."""

    def __init__(
        self, slot: int, argv: list[str], listening: socket.socket, *, standby: bool = False
    ) -> None:
        self.slot = slot  # -1: a standby
        self.standby = standby
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        self.control = ours
        env = {**os.environ, CONTROL_ENV: str(theirs.fileno())}
        if standby:
            env[STANDBY_ENV] = "1"
        self.proc = subprocess.Popen(  # noqa: S603 - our own argv
            argv, pass_fds=[listening.fileno(), theirs.fileno()], env=env
        )
        theirs.close()
        self.pid = self.proc.pid
        self.started = time.monotonic()
        self.ready_at: float | None = None
        self.drain_at: float | None = None

    def ready(self) -> bool:
        if self.ready_at is None:
            try:
                said = self.control.recv(64)
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                said = b""
            if said.startswith(b"ready"):
                self.ready_at = time.monotonic()
                logger.info(
                    "%s (pid %d) ready after %.1f s",
                    "standby" if self.standby else f"web process {self.slot}",
                    self.pid,
                    self.ready_at - self.started,
                )
        return self.ready_at is not None

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tell(self, word: bytes) -> None:
        with contextlib.suppress(OSError):
            self.control.sendall(word + b"\n")

    def promote(self, slot: int) -> None:
        self.slot, self.standby = slot, False
        self.ready_at = time.monotonic()  # serving from now
        self.tell(b"serve")

    def drain(self) -> None:
        if self.drain_at is None:
            self.drain_at = time.monotonic()
            self.tell(b"drain")

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            self.proc.kill()
        self.proc.wait()
        self.close()

    def close(self) -> None:
        self.control.close()


class Supervisor:
    def __init__(self, args: argparse.Namespace, sock: socket.socket) -> None:
        self.args = args
        self.sock = sock
        self.children: list[Child | None] = [None] * args.workers
        self.failures = [0] * args.workers
        self.next_start = [0.0] * args.workers
        self.retiring: list[Child] = []
        self.spares: list[Child] = []
        self.spare_failures = 0
        self.spares_after = 0.0  # no new standby before then
        self.rolling = False
        self.stopping = False
        self.reload = False

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "cloudbench.webserver",
            "-e",
            f"fd:fileno={self.sock.fileno()}",
            *DAPHNE_DEFAULTS,  # before the operator's options: theirs win
            *self.args.daphne_args,
            self.args.application,
        ]

    def start(self, i: int) -> Child:
        child = Child(i, self.command(), self.sock)
        logger.info("web process %d started (pid %d)", i, child.pid)
        self.children[i] = child
        return child

    def replace(self, i: int) -> None:
        """Put a ready standby in slot i, or start a fresh process there: at once when no
        process serves, else once the viewers reconnecting to those that serve have settled
        (a start-up takes the CPU they need; on a busy machine it made them wait a minute)."""
        spare = next((c for c in self.spares if c.ready() and c.alive()), None)
        if spare is None:
            now = time.monotonic()
            serving = any(
                c is not None and c.alive() and c.ready_at is not None for c in self.children
            )
            if serving and now < self.spares_after:
                self.next_start[i] = self.spares_after
                logger.info("web process %d starts again once the others have settled", i)
                return
            self.start(i)
            return
        self.spares.remove(spare)
        spare.promote(i)
        self.children[i] = spare
        self.spares_after = time.monotonic() + SPARES_SETTLE
        logger.info("standby (pid %d) took over as web process %d", spare.pid, i)

    def stop(self, *_: object) -> None:
        self.stopping = True

    def hup(self, *_: object) -> None:
        self.reload = True

    def tick(self) -> None:
        """Notice readiness, start again what died, reap what was retired."""
        now = time.monotonic()
        for i, child in enumerate(self.children):
            if child is None:
                if now >= self.next_start[i] and not self.stopping:
                    self.replace(i)
                continue
            child.ready()
            if child.alive():
                continue
            served = child.ready_at is not None and now - child.ready_at > SERVED_WELL
            self.failures[i] = 1 if served else self.failures[i] + 1
            # the first death of a process that served is started again at once; a process
            # that keeps dying before it serves waits longer each time
            pause = 0.0 if self.failures[i] == 1 else min(30.0, 0.5 * 2 ** (self.failures[i] - 1))
            logger.warning(
                "web process %d (pid %d) exited with %s; starting it again in %.1f s",
                i,
                child.pid,
                child.proc.returncode,
                pause,
            )
            child.close()
            self.children[i] = None
            self.next_start[i] = now + pause
            if pause == 0.0 and not self.stopping:
                self.replace(i)
        self.tend_spares(now)
        for child in list(self.retiring):
            if not child.alive():
                logger.info(
                    "web process %d (pid %d) retired: exited with %s",
                    child.slot,
                    child.pid,
                    child.proc.returncode,
                )
                child.close()
                self.retiring.remove(child)
            elif child.drain_at is not None and now - child.drain_at > DRAIN_LIMIT:
                logger.warning("process (pid %d) did not drain: killed", child.pid)
                child.kill()
                self.retiring.remove(child)

    def tend_spares(self, now: float) -> None:
        for spare in list(self.spares):
            spare.ready()
            if not spare.alive():
                self.spares.remove(spare)
                spare.close()
                self.spare_failures = 0 if spare.ready_at is not None else self.spare_failures + 1
                pause = min(30.0, 0.5 * 2**self.spare_failures) if self.spare_failures else 0.0
                logger.warning("standby (pid %d) exited with %s", spare.pid, spare.proc.returncode)
                self.spares_after = max(self.spares_after, now + pause)
        if (
            len(self.spares) < self.args.spares
            and now >= self.spares_after
            and not self.rolling
            and not self.stopping
            # after the processes that serve, and one at a time: start-ups are what a busy
            # machine has least room for
            and all(c is not None and c.ready_at is not None for c in self.children)
            and all(s.ready_at is not None for s in self.spares)
        ):
            spare = Child(-1, self.command(), self.sock, standby=True)
            logger.info("standby started (pid %d)", spare.pid)
            self.spares.append(spare)

    def wait(self, until, limit: float) -> bool:
        """Supervise while waiting for `until()`; False on stop or after `limit` seconds."""
        give_up = time.monotonic() + limit
        while not until():
            if self.stopping or time.monotonic() > give_up:
                return False
            self.tick()
            time.sleep(TICK)
        return True

    def roll(self) -> None:
        """Replace every process: the new ones serve before the old ones go."""
        logger.info("rolling restart of %d web processes", len(self.children))
        # the standbys run the code being replaced: they go first, new ones come after
        self.rolling = True
        for spare in self.spares:
            spare.drain()
            if spare.ready_at is None:
                spare.kill()  # still starting: it holds nothing
            else:
                self.retiring.append(spare)
        self.spares = []
        try:
            # a process still starting (after a crash) is left to finish first
            ready = self.wait(
                lambda: all(c is not None and c.ready() for c in self.children), READY_LIMIT
            )
            if not ready:
                logger.error("the web processes did not become ready: no rolling restart")
                return
            self._roll()
        finally:
            self.rolling = False

    def _roll(self) -> None:
        # Every new process starts, and warms up, while the old ones serve: no start-up takes the
        # CPU that the viewers moving over need, and each viewer moves once, to a new process.
        olds = list(self.children)
        news = []
        for i, old in enumerate(olds):
            if old is not None:
                self.retiring.append(old)  # it serves on while the new ones start
            news.append(self.start(i))
        started = self.wait(
            lambda: all(new.ready() or not new.alive() for new in news), READY_LIMIT
        )
        if not started or not all(new.ready() for new in news):
            if self.stopping:
                return
            logger.error(
                "the new web processes did not become ready: the restart stops here, the old "
                "processes go on serving"
            )
            for i, (new, old) in enumerate(zip(news, olds, strict=True)):
                new.kill()
                started_again = self.children[i]  # by tick, when the new one died
                if started_again is not None and started_again is not new:
                    started_again.kill()
                if old is not None and old.alive():
                    self.retiring.remove(old)
                    self.children[i] = old
                else:
                    self.children[i] = None
            return
        # The new processes serve: the old ones take no new connections, so that every viewer
        # moving off one lands on a new one.
        for old in olds:
            if old is not None:
                old.tell(b"quiet")
        for old in olds:
            if old is not None:
                old.drain()
                # one at a time: the viewers of one are settled before the next one's move
                self.wait(lambda old=old: old not in self.retiring, DRAIN_LIMIT + 1)
        logger.info("rolling restart done")

    def run(self) -> int:
        signal.signal(signal.SIGTERM, self.stop)
        signal.signal(signal.SIGINT, self.stop)
        signal.signal(signal.SIGHUP, self.hup)
        for i in range(len(self.children)):
            self.start(i)
        while not self.stopping:
            if self.reload:
                self.reload = False
                self.roll()
            self.tick()
            time.sleep(TICK)
        # stop: every process drains as in a restart, then whatever is left is killed
        every = [c for c in [*self.children, *self.retiring, *self.spares] if c is not None]
        for child in every:
            child.drain()
        deadline = time.monotonic() + DRAIN_LIMIT
        for child in every:
            try:
                child.proc.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                child.proc.kill()
                child.proc.wait()
            child.close()
        return 0


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    args = parse_args(argv)
    sock = listen(args.bind, args.port)
    logger.info("listening on %s:%d with %d web processes", args.bind, args.port, args.workers)
    return Supervisor(args, sock).run()


if __name__ == "__main__":
    sys.exit(main())
