"""A livestream viewer for tests/streaming/test_broadcast_ladder.py, run inside the network
namespace the test creates (``ip netns exec``): a receive-only aiortc peer whose ICE uses only
the namespace's address.

    python -m tests.streaming.netns_viewer LOCAL_ADDRESS NODE_ADDRESS

Prints JSON lines on stdout: ``{"offer": sdp}``, then once a second
``{"frames": n, "size": [w, h], "audio": n}``; reads the answer SDP as one JSON line on stdin.
"""

import asyncio
import json
import sys

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError

from streaming.node.internals import aioice_private


def say(message: dict) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def main(local: str, node: str) -> None:
    aioice_private.confine_host_addresses([local], remotes=[node])
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    pc.addTransceiver("video", direction="recvonly")
    pc.addTransceiver("audio", direction="recvonly")
    seen = {"frames": 0, "size": None, "audio": 0}

    async def drain(track) -> None:
        try:
            while True:
                frame = await track.recv()
                if track.kind == "video":
                    seen["frames"] += 1
                    seen["size"] = [frame.width, frame.height]
                else:
                    seen["audio"] += 1
        except MediaStreamError:
            return

    tasks = []
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(drain(track))))
    await pc.setLocalDescription(await pc.createOffer())
    say({"offer": pc.localDescription.sdp})
    line = await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    answer = json.loads(line)["answer"]
    await pc.setRemoteDescription(RTCSessionDescription(sdp=answer, type="answer"))
    while pc.connectionState not in ("failed", "closed"):
        say(dict(seen, state=pc.connectionState))
        await asyncio.sleep(0.5)
    await pc.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
