"""Uploads of personal files are sealed as they are read.

Django keeps an upload in memory, or spools one larger than FILE_UPLOAD_MAX_MEMORY_SIZE to a
temporary file in clear, and the storage then seals it in a second pass. A view that takes a
personal file bounds the request body first (it refuses an oversized one by its Content-Length)
and then installs ``SealingUploadHandler``: the multipart parser hands it each piece of the file
as it reads it, and the piece goes into a sealed file beside the storage's own (``INCOMING``).
The plaintext is held for less than one chunk and is on disk only as ciphertext.

The upload the view gets (``SealedUpload``) reads as the plaintext (to check its type, say);
``SealedStorage.save()`` moves its sealed file into place instead of sealing it again, and the
SHA-256 is the one sealed into it. An upload that is not kept is removed when the request ends;
one cut off by a crash is removed by the retention run (``sweep_incoming``)."""

from __future__ import annotations

import io
import os
import secrets
import time
from pathlib import Path

from django.core.files.uploadedfile import UploadedFile
from django.core.files.uploadhandler import FileUploadHandler

from .sealed import SealedReader, SealedWriter

# Under the sealed storage's location, so that keeping an upload is a rename on one filesystem.
INCOMING = ".incoming"
# An upload still here after this long was cut off (a request lasts seconds).
INCOMING_MAX_AGE = 24 * 3600


def incoming_dir(storage=None) -> Path:
    """Where uploads to ``storage`` (the sealed storage by default) are sealed as they arrive."""
    from .storage import sealed_storage

    return Path((storage or sealed_storage()).location) / INCOMING


class _Plaintext(io.RawIOBase):
    """A SealedReader as a raw stream, so that a buffered reader over it has everything a parser
    of the file may ask for (``readline``, ``peek``, ...)."""

    def __init__(self, reader: SealedReader) -> None:
        self.reader = reader

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self.reader.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self.reader.seek(offset, whence)

    def tell(self) -> int:
        return self.reader.tell()

    def close(self) -> None:
        self.reader.close()
        super().close()


class SealedUpload(UploadedFile):
    """An uploaded file sealed as it arrived. Reading it gives the plaintext; ``sha256`` is its
    SHA-256, computed as it was sealed."""

    def __init__(self, writer: SealedWriter, name, content_type, charset, content_type_extra):
        self.sealed_path = writer.path
        self.sha256 = writer.sha256
        plaintext = io.BufferedReader(_Plaintext(SealedReader(writer.path)), 64 * 1024)
        super().__init__(plaintext, name, content_type, writer.size, charset, content_type_extra)

    def close(self) -> None:
        # Django closes the request's files when the request ends: a kept upload has been moved
        # into the storage by then, and any other is removed here
        try:
            self.file.close()
        finally:
            self.sealed_path.unlink(missing_ok=True)


class SealingUploadHandler(FileUploadHandler):
    def __init__(self, request=None, *, storage=None) -> None:
        super().__init__(request)
        self.incoming = incoming_dir(storage)

    def new_file(self, *args, **kwargs) -> None:
        super().new_file(*args, **kwargs)
        self.writer = SealedWriter(self.incoming / f"{secrets.token_hex(16)}.upload")

    def receive_data_chunk(self, raw_data: bytes, start: int) -> None:
        self.writer.write(raw_data)

    def file_complete(self, file_size: int) -> SealedUpload:
        self.writer.close()
        return SealedUpload(
            self.writer, self.file_name, self.content_type, self.charset, self.content_type_extra
        )

    def upload_interrupted(self) -> None:
        writer = getattr(self, "writer", None)
        if writer is not None and not writer.closed:
            writer.abort()


def seal_uploads(request, *, storage=None) -> None:
    """Call before the view reads ``request.POST`` or ``request.FILES`` (so: csrf_exempt outside,
    csrf_protect inside); ``storage``: the sealed storage the files will be kept in."""
    request.upload_handlers = [SealingUploadHandler(request, storage=storage)]


def sweep_incoming(*, now: float | None = None) -> int:
    """Remove the sealed uploads that a request cut off left behind; how many."""
    now = time.time() if now is None else now
    removed = 0
    try:
        entries = list(os.scandir(incoming_dir()))
    except FileNotFoundError:
        return 0
    for entry in entries:
        if entry.name.endswith(".upload") and entry.stat().st_mtime < now - INCOMING_MAX_AGE:
            Path(entry.path).unlink(missing_ok=True)
            removed += 1
    return removed
