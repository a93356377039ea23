"""Sockets opening together are let in side by side: nothing on the connect path of the live and
watch sockets (the user read off the session, the staff check, the room's state) waits for the
one thread that a process's thread-sensitive work shares. After a crash, hundreds of viewers
reconnect at once; had any step queued on that thread, they would be let in one after another.

The shared thread is held busy for the whole test: every socket still opens."""

import asyncio
import json
import threading

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.testing import WebsocketCommunicator

from tests.factories import UserFactory
from tests.faults.conftest import cookie_for

pytestmark = pytest.mark.django_db(transaction=True)

SIGNED_IN = 4
ANONYMOUS = 4


def _open_all_while_the_shared_thread_is_busy(paths: list[tuple[str, bytes]]) -> list[dict]:
    from asgi import application

    release = threading.Event()
    busy = threading.Event()

    def hold_the_shared_thread() -> None:
        busy.set()
        release.wait(60)

    async def attempt() -> list[dict]:
        holder = asyncio.ensure_future(
            sync_to_async(hold_the_shared_thread, thread_sensitive=True)()
        )
        await asyncio.to_thread(busy.wait, 10)
        assert busy.is_set()
        comms = []
        for path, cookie in paths:
            headers = [(b"origin", b"http://testserver")]
            if cookie:
                headers.append((b"cookie", cookie))
            comms.append(WebsocketCommunicator(application, path, headers=headers))
        try:
            opened = await asyncio.gather(*(c.connect(timeout=20) for c in comms))
            assert all(ok for ok, _code in opened), opened
            first = await asyncio.gather(*(c.receive_from(timeout=20) for c in comms))
            # the shared thread was busy all along: nothing above waited for it
            assert not holder.done()
            return [json.loads(f) for f in first]
        finally:
            release.set()
            await holder
            for c in comms:
                await c.disconnect()

    return async_to_sync(attempt)()


def test_live_sockets_open_side_by_side_signed_in_or_not(settings, live_case):
    settings.MFA_REQUIRED_FOR_STAFF = True  # the staff check is on the path too
    hearing = live_case["hearing"]
    users = [UserFactory() for _ in range(SIGNED_IN)]
    paths = [(f"/ws/live/{hearing.public_id}/?after=0", cookie_for(u).encode()) for u in users]
    paths += [(f"/ws/live/{hearing.public_id}/?after=0", b"")] * ANONYMOUS

    frames = _open_all_while_the_shared_thread_is_busy(paths)

    assert [f["type"] for f in frames] == ["welcome"] * (SIGNED_IN + ANONYMOUS)
    # the session was read: the signed-in viewers may comment, the others may not
    assert [f["can_comment"] for f in frames] == [True] * SIGNED_IN + [False] * ANONYMOUS
