"""Every sealed file the platform keeps, by kind: where to find them, and what to do to all."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

from .sealed import SealedReader, SealedWriter, is_sealed


@dataclass(frozen=True)
class KeptFile:
    kind: str  # evidence | recording | agreement_pdf
    pk: int
    path: Path
    sha256: str  # of the plaintext; empty where none was stored


def kept_files() -> Iterator[KeptFile]:
    from mediation_room.agreements.models import Agreement
    from streaming.models import Evidence, Recording

    for pk, name, sha in Evidence.objects.values_list("pk", "file", "sha256").iterator():
        yield KeptFile("evidence", pk, Path(settings.MEDIA_ROOT) / name, sha)
    for pk, name, sha in Recording.objects.values_list("pk", "file", "sha256").iterator():
        yield KeptFile("recording", pk, Path(settings.MEDIA_ROOT) / name, sha)
    agreements = Agreement.objects.exclude(pdf="").values_list("pk", "pdf")
    for pk, name in agreements.iterator():
        yield KeptFile("agreement_pdf", pk, Path(settings.MEDIA_ROOT) / name, "")


def seal_in_place(path: Path, *, expected_sha256: str = "") -> bool:
    """Seal a file kept in clear (from before encryption at rest). The sealed copy is written
    beside it, checked against the plaintext's hash, synced, then moved over the original, so a
    crash leaves either file whole. False if it was sealed already."""
    if is_sealed(path):
        return False
    partial = path.with_name(path.name + ".sealing")
    partial.unlink(missing_ok=True)
    with open(path, "rb") as source, SealedWriter(partial) as writer:
        for block in iter(lambda: source.read(1 << 20), b""):
            writer.write(block)
    if expected_sha256 and writer.sha256 != expected_sha256:
        partial.unlink()
        raise ValueError(f"{path.name} does not match its stored SHA-256; left as it was")
    with SealedReader(partial) as reader:
        if reader.sha256() != writer.sha256:
            partial.unlink()
            raise ValueError(f"the sealed copy of {path.name} does not read back")
    with open(partial, "rb") as handle:
        os.fsync(handle.fileno())
    os.replace(partial, path)
    return True


def finish_unfinished(path: Path) -> int:
    """Seal again, as a finished file, the readable part of a sealed file whose writer never
    closed (a media node that crashed while recording: its fragmented MP4 plays up to the last
    whole fragment). Returns the plaintext size kept."""
    partial = path.with_name(path.name + ".sealing")
    partial.unlink(missing_ok=True)
    with SealedReader(path, unfinished=True) as reader, SealedWriter(partial) as writer:
        for block in reader.iter_range():
            writer.write(block)
    os.replace(partial, path)
    return writer.size
