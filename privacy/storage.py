"""Django's storage for personal files: a FileSystemStorage whose files are sealed on disk.

``save()`` seals what it is given (a chunk at a time, never the whole file in memory; an upload
sealed as it arrived, privacy.uploads, is moved into place) and ``open()`` gives a file object
reading the plaintext; ``size()`` is the plaintext size and ``sha256()`` its hash, sealed into the
file as it was saved (nothing is read again to know it). Models point their FileFields at it with
``storage=sealed_storage``."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.files import File
from django.core.files.storage import FileSystemStorage, storages

from .sealed import SealedReader, SealedWriter
from .uploads import SealedUpload


class SealedStorage(FileSystemStorage):
    def _save(self, name: str, content: File) -> str:
        full = Path(self.path(name))
        full.parent.mkdir(parents=True, exist_ok=True)
        if not self._move_sealed_upload(content, full):
            if hasattr(content, "seek"):
                content.seek(0)
            with SealedWriter(full) as writer:
                for chunk in content.chunks():
                    writer.write(chunk)
        if self.file_permissions_mode is not None:
            os.chmod(full, self.file_permissions_mode)
        return str(name).replace("\\", "/")

    @staticmethod
    def _move_sealed_upload(content: File, full: Path) -> bool:
        """An upload sealed as it arrived (privacy.uploads) is put in place as it is: linked
        under its name (which, as a new file, must not exist yet) and unlinked from the incoming
        folder. False when that cannot be done (another upload, another filesystem, or this one
        kept already): then it is sealed again from its plaintext."""
        if not isinstance(content, SealedUpload):
            return False
        try:
            os.link(content.sealed_path, full)
        except FileExistsError:
            raise
        except OSError:
            return False
        content.sealed_path.unlink(missing_ok=True)
        return True

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
