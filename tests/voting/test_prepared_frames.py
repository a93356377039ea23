"""Room batches written straight to sockets by `cloudbench.webserver` (a frame prepared once for
every viewer), against the real server process, PostgreSQL and the Redis channel layer: every
viewer gets every comment once and in order, one who joins mid-burst catches up without repeats,
and the hub reports that the batches went the direct way."""

import asyncio
import json
import time
from pathlib import Path

import pytest
from asgiref.sync import async_to_sync

from tests.e2e.conftest import ARTIFACTS, LiveServer
from tests.factories import UserFactory
from tests.faults.conftest import session_cookie

pytestmark = [pytest.mark.realtime, pytest.mark.django_db(transaction=True)]

COMMENTS = 40


class RawViewer:
    """Records every event of every frame exactly as the server sent it."""

    def __init__(self, base: str, room: str, cookie: str = "", after: int = -1) -> None:
        self.url = base.replace("http://", "ws://") + f"/ws/live/{room}/?after={after}"
        self.origin = base
        self.cookie = cookie
        self.seqs: list[int] = []
        self.comments: dict[int, str] = {}
        self.acks: dict[str, int] = {}
        self.welcome: dict | None = None
        self.errors: list[dict] = []

    async def open(self) -> None:
        from websockets.asyncio.client import connect

        headers = {"Cookie": self.cookie} if self.cookie else None
        self.ws = await connect(
            self.url, origin=self.origin, additional_headers=headers, compression=None
        )
        self.welcome = json.loads(await self.ws.recv())
        assert self.welcome["type"] == "welcome", self.welcome
        self.reader = asyncio.ensure_future(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame["type"] == "events":
                for event in frame["events"]:
                    self.seqs.append(event["seq"])
                    if event["kind"] == "comment":
                        self.comments[event["seq"]] = event["text"]
            elif frame["type"] == "comment.ack":
                self.acks[frame["client_id"]] = frame["seq"]
            elif frame["type"] == "error":
                self.errors.append(frame)

    async def post(self, client_id: str, text: str) -> None:
        await self.ws.send(
            json.dumps({"v": 1, "type": "comment", "client_id": client_id, "text": text})
        )

    async def close(self) -> None:
        await self.ws.close()
        await self.reader


async def _until(condition, what, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not condition():
        assert time.monotonic() < deadline, (
            f"timed out waiting for {what if isinstance(what, str) else what()}"
        )
        await asyncio.sleep(0.05)


def _log(server: LiveServer) -> str:
    return Path(server.log.name).read_text()


def test_batches_written_straight_to_sockets_reach_every_viewer_once_in_order(live_case):
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    server = LiveServer()
    try:
        base, room = server.url, live_case["hearing"].public_id
        # four posters: ten comments each stay within a resident's limit
        posters = [UserFactory() for _ in range(4)]
        cookies = [session_cookie(u, base) for u in posters]
        cookie_headers = [f"{c['name']}={c['value']}" for c in cookies]

        async def scenario() -> tuple[list[RawViewer], RawViewer, dict[str, int]]:
            viewers = [RawViewer(base, room) for _ in range(6)]
            senders = [RawViewer(base, room, cookie=h) for h in cookie_headers]
            for client in [*viewers, *senders]:
                await client.open()
            start = viewers[0].welcome["seq"]

            async def burst(first: int, last: int) -> None:
                for i in range(first, last):
                    await senders[i % 4].post(f"comment-{i:04d}", f"第{i}条评论")
                    await asyncio.sleep(0.01)

            await burst(0, COMMENTS // 2)
            # A viewer who was away since `start` comes back mid-burst: the backlog, then live.
            late = RawViewer(base, room, after=start)
            opening = asyncio.ensure_future(late.open())
            await burst(COMMENTS // 2, COMMENTS)
            await opening
            acks = {}
            await _until(
                lambda: sum(len(s.acks) for s in senders) == COMMENTS,
                lambda: f"acks; errors: {[s.errors for s in senders]}",
            )
            for s in senders:
                acks.update(s.acks)
            last = max(acks.values())
            for v in [*viewers, late]:
                await _until(lambda v=v: v.seqs and v.seqs[-1] >= last, "every comment")
            for client in [*viewers, *senders, late]:
                await client.close()
            return viewers, late, acks

        viewers, late, acks = async_to_sync(scenario)()
        expected = {seq: f"第{int(client_id[8:])}条评论" for client_id, seq in acks.items()}
        for viewer in [*viewers, late]:
            # no repeats, nothing out of order, nothing missing
            assert viewer.seqs == sorted(set(viewer.seqs))
            assert {s: t for s, t in viewer.comments.items() if s in expected} == expected
        assert late.seqs[0] == viewers[0].welcome["seq"] + 1

        # The hub logs its tally when the last local viewer leaves.
        deadline = time.monotonic() + 10
        while "the last local viewer left" not in _log(server):
            assert time.monotonic() < deadline, _log(server)[-3000:]
            time.sleep(0.1)
        line = next(ln for ln in _log(server).splitlines() if "the last local viewer left" in ln)
        direct = int(line.split("; ")[1].split()[0])
        assert direct >= len(viewers) * 2, line
    finally:
        server.stop()
