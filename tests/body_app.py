"""A bare ASGI application for tests/test_webserver_bodies.py: what `cloudbench.webserver` does
with request and response bodies, without Django in the way.

    GET /stream/<n>   n MiB, sent a fresh MiB at a time (each send has more to follow)
    POST /upload      answers the body's length and SHA-256 once it has all of it
    GET /stuck        leaves a thread behind that never ends, as a commit hook's thread waiting
                      for an event loop that has stopped
    GET /crash        dies of a segmentation fault in native code, as a codec's bug would
"""

import ctypes
import hashlib
import json
import os
import threading

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudbench.settings")

MIB = 1024 * 1024


async def application(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/stuck":
        threading.Thread(target=threading.Event().wait, name="stuck").start()
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return
    if scope["path"] == "/crash":
        ctypes.string_at(0)  # reads address 0: SIGSEGV
    if scope["path"].startswith("/stream/"):
        count = int(scope["path"].rsplit("/", 1)[1])
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for _ in range(count):
            await send({"type": "http.response.body", "body": os.urandom(MIB), "more_body": True})
        await send({"type": "http.response.body", "body": b""})
        return
    digest, length = hashlib.sha256(), 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return
        digest.update(message.get("body", b""))
        length += len(message.get("body", b""))
        if not message.get("more_body"):
            break
    body = json.dumps({"length": length, "sha256": digest.hexdigest()}).encode()
    headers = [(b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
