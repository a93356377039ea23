"""Django's storage for personal files: a FileSystemStorage whose files are sealed on disk.

``save()`` seals what it is given (a chunk at a time, never the whole file in memory) and
``open()`` gives a file object reading the plaintext; ``size()`` is the plaintext size and
``sha256()`` its hash, sealed into the file as it was saved (nothing is read again to know it). Models
point their FileFields at it with ``storage=sealed_storage``."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.files import File
from django.core.files.storage import FileSystemStorage, storages

from .sealed import SealedReader, SealedWriter


class SealedStorage(FileSystemStorage):
    def _save(self, name: str, content: File) -> str:
        full = Path(self.path(name))
        full.parent.mkdir(parents=True, exist_ok=True)
        if hasattr(content, "seek"):
            content.seek(0)
        with SealedWriter(full) as writer:
            for chunk in content.chunks():
                writer.write(chunk)
        if self.file_permissions_mode is not None:
            os.chmod(full, self.file_permissions_mode)
        return str(name).replace("\\", "/")

    def _open(self, name: str, mode: str = "rb") -> File:
        if "w" in mode or "a" in mode or "+" in mode:
            raise ValueError("sealed files are written with save(), not opened for writing")
        return File(SealedReader(self.path(name)), name)

    def size(self, name: str) -> int:
        with SealedReader(self.path(name)) as reader:
            return reader.size

    def sha256(self, name: str) -> str:
        """The SHA-256 of the plaintext, sealed into the file when it was saved."""
        with SealedReader(self.path(name)) as reader:
            return reader.sealed_sha256


def sealed_storage() -> SealedStorage:
    return storages["sealed"]
