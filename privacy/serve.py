"""Serving a sealed file: decrypted a chunk at a time as it is sent, with byte ranges.

Given the SHA-256 stored when the file was kept, a response checks it against the one sealed into
the file before it sends anything: every chunk is authenticated by AES-GCM and the last chunk
binds the sealed SHA-256, so equal hashes prove that this is the file the row was written with and
not another sealed file put in its place; no byte of the file has to be hashed again. A file that
does not match raises ``HashMismatch`` (a server error, reported), and nothing is sent.

Under an ASGI server the plaintext is produced in a worker thread a batch at a time, so the event
loop never decrypts and the file is never held whole in memory."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from urllib.parse import quote

from asgiref.sync import sync_to_async
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse

from .sealed import SealedReader

logger = logging.getLogger(__name__)

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
# what one hop to a worker thread produces for an ASGI server
BATCH_BYTES = 1024 * 1024


class HashMismatch(Exception):
    pass


def _stream(reader: SealedReader, start: int, end: int) -> Iterator[bytes]:
    try:
        yield from reader.iter_range(start, end)
    finally:
        reader.close()


def _take(parts: Iterator[bytes], limit: int) -> list[bytes]:
    batch, size = [], 0
    for part in parts:
        batch.append(part)
        size += len(part)
        if size >= limit:
            break
    return batch


class ThreadedStreamingResponse(StreamingHttpResponse):
    """A streaming response over a synchronous iterator that an ASGI server gets a batch at a
    time from a worker thread (Django's own fallback would first read the iterator whole into a
    list). Served synchronously it is an ordinary StreamingHttpResponse."""

    async def __aiter__(self) -> AsyncIterator[bytes]:
        parts = iter(self.streaming_content)
        take = sync_to_async(_take, thread_sensitive=False)
        while batch := await take(parts, BATCH_BYTES):
            for part in batch:
                yield part


def _disposition(filename: str, *, inline: bool) -> str:
    kind = "inline" if inline else "attachment"
    ascii_name = filename.encode("ascii", "ignore").decode() or "file"
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename)}"


def sealed_response(
    request: HttpRequest,
    path: str | Path,
    *,
    content_type: str,
    filename: str,
    inline: bool = True,
    sha256: str | None = None,
    ranges: bool = False,
) -> HttpResponse:
    """The plaintext of the sealed file at ``path``; with ``ranges``, a single ``Range: bytes=``
    request gets 206 (or 416), as video players ask for. With ``sha256``, only the file kept
    with that hash is served."""
    try:
        reader = SealedReader(path)
    except FileNotFoundError as exc:
        raise Http404 from exc
    if sha256 and reader.sealed_sha256 != sha256:
        reader.close()
        logger.error("sealed file %s does not match its stored SHA-256", Path(path).name)
        raise HashMismatch(Path(path).name)
    size = reader.size
    start, end, status = 0, size, 200
    header = request.META.get("HTTP_RANGE", "") if ranges else ""
    match = RANGE.match(header.strip()) if header else None
    if match and (match[1] or match[2]):
        if match[1]:
            start = int(match[1])
            end = min(size, int(match[2]) + 1) if match[2] else size
        else:  # the last n bytes
            start = max(0, size - int(match[2]))
        if start >= size or start >= end:
            reader.close()
            response = HttpResponse(status=416)
            response["Content-Range"] = f"bytes */{size}"
            return response
        status = 206
    response = ThreadedStreamingResponse(
        _stream(reader, start, end), status=status, content_type=content_type
    )
    response["Content-Length"] = str(end - start)
    if status == 206:
        response["Content-Range"] = f"bytes {start}-{end - 1}/{size}"
    if ranges:
        response["Accept-Ranges"] = "bytes"
    response["Content-Disposition"] = _disposition(filename, inline=inline)
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response
