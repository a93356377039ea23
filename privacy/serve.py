"""Serving a sealed file: decrypted a chunk at a time as it is sent, with byte ranges.

A whole-file response hashes what it sends and, if that is not the SHA-256 stored when the file
was kept, stops before the last chunk: the client gets a short (failed) download, never a wrong
file that looks complete. Once a process has sent a file whole and found its hash right, it does
not hash that file again while it is unchanged (same inode, size, modification time and header,
so also the same file id and data key): every chunk is still authenticated by AES-GCM, which
already proves the content is what was sealed, and a file swapped for another sealed file is
another identity and is hashed again."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse

from .sealed import Recent, SealedReader

logger = logging.getLogger(__name__)

RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


# (file identity, SHA-256) -> True: served whole and found to match
_HASH_MATCHED = Recent(1024)


class HashMismatch(Exception):
    pass


def _stream(
    reader: SealedReader, start: int, end: int, expected_sha256: str | None
) -> Iterator[bytes]:
    matched = (reader.identity, expected_sha256)
    if expected_sha256 and _HASH_MATCHED.get(matched):
        expected_sha256 = None
    digest = hashlib.sha256() if expected_sha256 else None
    try:
        held: bytes | None = None
        for data in reader.iter_range(start, end):
            if held is not None:
                yield held
            if digest is not None:
                digest.update(data)
            held = data
        if digest is not None and digest.hexdigest() != expected_sha256:
            logger.error("sealed file %s does not match its stored SHA-256", reader.path.name)
            raise HashMismatch(reader.path.name)
        if digest is not None:
            _HASH_MATCHED.put(matched, True)
        if held is not None:
            yield held
    finally:
        reader.close()


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
    request gets 206 (or 416), as video players ask for."""
    try:
        reader = SealedReader(path)
    except FileNotFoundError as exc:
        raise Http404 from exc
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
    whole = status == 200
    response = StreamingHttpResponse(
        _stream(reader, start, end, sha256 if whole else None),
        status=status,
        content_type=content_type,
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
