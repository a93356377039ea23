"""``manage.py medianode``: run one media node of the pool; ``--drain <id>``: drain one."""

from __future__ import annotations

import asyncio
import signal

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError


class Command(BaseCommand):
    help = (
        "Run a media node of the pool: the aiortc peer connections of the rooms placed on it and "
        "their livestreams, reached through its own channel on the channel layer. SIGTERM or "
        "SIGUSR1 drains it (its rooms move to other nodes) and it exits when it holds nothing. "
        "With --drain <node id>: ask that node to drain, and wait until it has left the pool."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument(
            "--id",
            dest="node_id",
            default="",
            help="this node's id in the pool (default: MEDIA_NODE_ID, else <host>-<pid>)",
        )
        parser.add_argument(
            "--capacity",
            type=int,
            default=None,
            help="rooms this node declares it carries (default: MEDIA_NODE_CAPACITY)",
        )
        parser.add_argument(
            "--public-address",
            default=None,
            help="the address its peers reach it on (default: MEDIA_NODE_PUBLIC_ADDRESS)",
        )
        parser.add_argument(
            "--udp-ports",
            default=None,
            help="its UDP port range, e.g. 40000-40999 (default: MEDIA_NODE_UDP_PORTS)",
        )
        parser.add_argument(
            "--drain",
            metavar="NODE_ID",
            default="",
            help="drain that node (no new rooms; its rooms move) and wait until it exits",
        )
        parser.add_argument(
            "--wait", type=float, default=600.0, help="with --drain: how long to wait (s)"
        )
        parser.add_argument("--list", action="store_true", help="list the pool's nodes and exit")

    def handle(self, *args, **options) -> None:
        from streaming import pool

        if options["list"]:
            for node in pool.all_nodes():
                state = "draining" if node["draining"] else ("live" if node["live"] else "gone")
                self.stdout.write(
                    f"{node['id']}\t{state}\trooms={node['rooms']}/{node.get('capacity', '?')}"
                    f"\tcpu={node.get('cpu', 0):.0f}%\t{node.get('address', '')}"
                    f"\t{node.get('udp_ports', '')}"
                )
            return
        if options["drain"]:
            self._drain(options["drain"], options["wait"])
            return
        if options["capacity"] is not None:
            settings.MEDIA_NODE_CAPACITY = options["capacity"]
        if options["public_address"] is not None:
            settings.MEDIA_NODE_PUBLIC_ADDRESS = options["public_address"]
        if options["udp_ports"] is not None:
            settings.MEDIA_NODE_UDP_PORTS = options["udp_ports"]
        node_id = options["node_id"] or pool.local_node_id()
        pool.set_local_node_id(node_id)
        from cloudbench.logs import dump_stacks_on_signal
        from streaming.node.worker import node_worker

        dump_stacks_on_signal()
        worker = node_worker(node_id)
        self.stdout.write(f"media node {node_id}: consuming {worker.channels[0]}")
        self.stdout.flush()

        async def run() -> None:
            loop = asyncio.get_running_loop()

            def drain() -> None:
                if worker.member is not None:
                    worker.member.start_drain()

            for sig in (signal.SIGTERM, signal.SIGUSR1):
                loop.add_signal_handler(sig, drain)
            await worker.arun()

        asyncio.run(run())
        self.stdout.write(f"media node {node_id}: stopped")

    def _drain(self, node_id: str, wait: float) -> None:
        import time

        from streaming import pool

        if not any(n["id"] == node_id for n in pool.live_nodes()):
            raise CommandError(f"no live media node {node_id!r}")
        pool.set_draining(node_id, True)
        self.stdout.write(f"media node {node_id}: draining")
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            nodes = {n["id"]: n for n in pool.live_nodes()}
            if node_id not in nodes:
                self.stdout.write(f"media node {node_id}: drained and gone")
                return
            self.stdout.write(f"  {nodes[node_id]['rooms']} room(s) left")
            time.sleep(1.0)
        raise CommandError(f"media node {node_id} still holds rooms after {wait:g} s")
