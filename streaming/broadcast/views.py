"""HLS files of a broadcast, for the embedded server and tests; nginx serves the same URLs from
the same directory in production (docker/nginx.conf), with the same cache headers."""

from __future__ import annotations

import re

from django.conf import settings
from django.http import FileResponse, Http404, HttpRequest

from streaming.broadcast.selectors import broadcast_facts

# the master playlist, a rendition's playlist (live.m3u8 for the top layer, 180p.m3u8, audio.m3u8)
# and a rendition's segments (streaming/node/broadcast/hls.py)
HLS_NAME = re.compile(r"^([a-z0-9]{1,12}\.m3u8|([a-z0-9]{1,12}_)?segment_\d{5}\.ts)$")
PUBLIC_ID = re.compile(r"^[A-Za-z0-9_-]{8,64}$")


def hls_file(request: HttpRequest, public_id: str, name: str) -> FileResponse:
    if not PUBLIC_ID.match(public_id) or not HLS_NAME.match(name):
        raise Http404
    facts = broadcast_facts(public_id)
    # a finished hearing's files are its replay: only with every party's recording consent
    if facts is None or not facts.public or (facts.finished and not facts.recording_consent):
        raise Http404
    path = settings.BROADCAST_HLS_ROOT / public_id / name
    try:
        handle = path.open("rb")
    except FileNotFoundError:
        raise Http404 from None
    if name.endswith(".m3u8"):
        response = FileResponse(handle, content_type="application/vnd.apple.mpegurl")
        # The live playlist changes every segment; a replay's never does, but is small.
        response["Cache-Control"] = "no-cache, max-age=1"
    else:
        response = FileResponse(handle, content_type="video/mp2t")
        # A segment never changes once listed.
        response["Cache-Control"] = "public, max-age=86400, immutable"
    return response
