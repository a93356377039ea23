"""Sealed files: personal files encrypted at rest, each with its own data key.

Layout of a sealed file (every integer big-endian)::

    header (128 bytes)
        magic        8   b"CBSEAL1\\n"
        file id     16   random, bound into every chunk
        chunk size   4   plaintext bytes per chunk (64 KiB)
        sha256      32   of the whole plaintext, written when the file is closed (zeros until then)
        master id    8   which master key wrapped the data key
        wrap nonce  12
        wrapped key 48   AES-256-GCM(master, data key), associated data = magic + file id + master id
    chunks, each
        nonce       12   random
        ciphertext  n    AES-256-GCM(data key), n = chunk size except for the last chunk
        tag         16   associated data = file id + chunk index (8) + final flag (1), and for
                         the final chunk the header's sha256 too

The index and the final flag in the associated data make reordering, dropping or cutting chunks
fail authentication; the last chunk is checked whenever a file is opened, so a file cut short at a
chunk boundary fails too, and so does a header whose sha256 was changed. The sha256 a reader
reports is therefore the one the writer computed over exactly these chunks: comparing it with the
hash a database row stored when the file was kept tells whether this is that row's file (not
another sealed file put in its place) without reading the file again. Any chunk can be decrypted
on its own, which is what range requests need. A writer emits each whole chunk as soon as it has
it; a file whose length is a multiple of the chunk size therefore ends with an empty final chunk
(nonce and tag only).

Reading is built for serving: the unwrapped data key of a recently opened file is kept in the
process (keyed by the key slot and the master key that unwrapped it, so a changed master key
unwraps again), and so is the fact that a file's last chunk authenticated (keyed by the file's
inode, size and modification time): a player's range requests on one recording pay for neither
again. Chunks are read several at a time with ``os.preadv`` into a buffer the reader keeps and
decrypted from a memoryview of it.

Rotating the master key rewrites only the key slot of the header (the master id, nonce and wrapped
key), never the content.
"""

from __future__ import annotations

import base64
import hashlib
import os
import secrets
import struct
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

MAGIC = b"CBSEAL1\n"
CHUNK = 64 * 1024
NONCE = 12
TAG = 16
KEY_SLOT = struct.Struct(">8s12s48s")
HEADER = struct.Struct(f">8s16sI32s{KEY_SLOT.size}s")
KEY_SLOT_OFFSET = HEADER.size - KEY_SLOT.size
DIGEST_OFFSET = KEY_SLOT_OFFSET - 32
NO_DIGEST = bytes(32)
CHUNK_AAD = struct.Struct(">16sQB")
STRIDE = CHUNK + NONCE + TAG
READ_CHUNKS = 4  # chunks fetched by one read when serving (256 KiB)


class SealError(Exception):
    """A sealed file cannot be opened: wrong master key, tampering, truncation, not sealed."""


@dataclass(frozen=True)
class MasterKey:
    key_id: bytes
    key: bytes

    @classmethod
    def from_b64(cls, value: str) -> MasterKey:
        try:
            key = base64.b64decode(value.strip(), validate=True)
        except ValueError as exc:
            raise SealError("a file master key must be base64") from exc
        if len(key) != 32:
            raise SealError("a file master key must be 32 bytes (base64 of 32 random bytes)")
        return cls(key_id=master_key_id(key), key=key)


def master_key_id(key: bytes) -> bytes:
    return hashlib.sha256(b"cloudbench file master key\0" + key).digest()[:8]


def current_master() -> MasterKey:
    return MasterKey.from_b64(settings.FILE_MASTER_KEY)


_MASTERS: tuple[tuple[str, tuple[str, ...]], dict[bytes, MasterKey]] | None = None


def known_masters() -> dict[bytes, MasterKey]:
    """The current master and the retired ones still accepted for reading (during a rotation).
    Parsed again whenever the settings change."""
    global _MASTERS
    configured = (settings.FILE_MASTER_KEY, tuple(settings.FILE_MASTER_KEYS_RETIRED))
    if _MASTERS is None or _MASTERS[0] != configured:
        masters = [MasterKey.from_b64(configured[0])] + [
            MasterKey.from_b64(value) for value in configured[1]
        ]
        _MASTERS = (configured, {m.key_id: m for m in masters})
    return _MASTERS[1]


class Recent:
    """A small thread-safe LRU of what opening a sealed file established."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key):
        with self._lock:
            value = self._items.get(key)
            if value is not None:
                self._items.move_to_end(key)
            return value

    def put(self, key, value) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.size:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


# (file id, key slot, master key) -> AESGCM of the data key
_DATA_KEYS = Recent(256)
# (device, inode, size, mtime, header) -> True: the final chunk authenticated
_TAIL_CHECKED = Recent(1024)


def _wrap(master: MasterKey, file_id: bytes, data_key: bytes) -> bytes:
    nonce = secrets.token_bytes(NONCE)
    wrapped = AESGCM(master.key).encrypt(nonce, data_key, MAGIC + file_id + master.key_id)
    return KEY_SLOT.pack(master.key_id, nonce, wrapped)


def _data_aead(slot: bytes, file_id: bytes, masters: dict[bytes, MasterKey]) -> AESGCM:
    """The AEAD of a file's data key, unwrapped once per file (and master key) in a process."""
    master = masters.get(slot[:8])
    cache_key = (file_id, slot, master.key if master else None)
    aead = _DATA_KEYS.get(cache_key) if master else None
    if aead is None:
        aead = AESGCM(_unwrap(slot, file_id, masters))
        _DATA_KEYS.put(cache_key, aead)
    return aead


def _unwrap(slot: bytes, file_id: bytes, masters: dict[bytes, MasterKey]) -> bytes:
    key_id, nonce, wrapped = KEY_SLOT.unpack(slot)
    master = masters.get(key_id)
    if master is None:
        raise SealError(
            f"sealed with master key {key_id.hex()}, which is not configured "
            "(FILE_MASTER_KEY / FILE_MASTER_KEYS_RETIRED)"
        )
    try:
        return AESGCM(master.key).decrypt(nonce, wrapped, MAGIC + file_id + key_id)
    except InvalidTag as exc:
        raise SealError("the data key does not unwrap: wrong master key or tampered") from exc


class SealedWriter:
    """A write-only, non-seekable file object that seals what is written to it.

    Plaintext is held for less than one chunk; PyAV can mux straight into it (it sees no ``seek``),
    and what it has written so far is on disk only as ciphertext. ``sha256`` and ``size`` describe
    the plaintext once closed; the SHA-256 is also sealed into the file."""

    def __init__(self, path: str | Path, *, master: MasterKey | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        master = master or current_master()
        self.file_id = secrets.token_bytes(16)
        key = AESGCM.generate_key(bit_length=256)
        self._aead = AESGCM(key)
        self._handle = open(self.path, "xb", buffering=0)  # noqa: SIM115 (closed in close())
        self._fd = self._handle.fileno()
        _write_all(self._fd, [MAGIC + self.file_id + struct.pack(">I", CHUNK) + NO_DIGEST])
        _write_all(self._fd, [_wrap(master, self.file_id, key)])
        self._buffer = bytearray()
        self._index = 0
        self._digest = hashlib.sha256()
        self.size = 0
        self.sha256 = ""
        self.closed = False

    def seekable(self) -> bool:
        return False

    def writable(self) -> bool:
        return True

    def _emit(self, data: bytes | memoryview, *, final: bytes = b"") -> None:
        """``final``: the plaintext's SHA-256, given with the last chunk only."""
        nonce = secrets.token_bytes(NONCE)
        aad = CHUNK_AAD.pack(self.file_id, self._index, 1 if final else 0) + final
        # one write per chunk, straight to the file: a crash loses at most the chunk being filled
        _write_all(self._fd, [nonce, self._aead.encrypt(nonce, data, aad)])
        self._index += 1

    def write(self, data: bytes | bytearray | memoryview) -> int:
        if self.closed:
            raise ValueError("write to a closed sealed file")
        view = memoryview(data).cast("B")
        written = len(view)
        self._digest.update(view)
        self.size += written
        if self._buffer:
            take = view[: CHUNK - len(self._buffer)]
            self._buffer += take
            view = view[len(take) :]
            if len(self._buffer) < CHUNK:
                return written
            self._emit(self._buffer)
            self._buffer = bytearray()
        while len(view) >= CHUNK:  # whole chunks straight from the caller's buffer
            self._emit(view[:CHUNK])
            view = view[CHUNK:]
        if view:
            self._buffer += view
        return written

    def flush(self) -> None:
        pass  # every whole chunk is written as it is filled

    def close(self) -> None:
        if self.closed:
            return
        # the final chunk: what is left, possibly nothing, authenticated with the digest, which
        # then goes into the header
        digest = self._digest.digest()
        self._emit(self._buffer, final=digest)
        self._buffer.clear()
        os.pwrite(self._fd, digest, DIGEST_OFFSET)
        self._handle.close()
        self.sha256 = digest.hex()
        self.closed = True

    def abort(self) -> None:
        """Stop writing and remove the unfinished file."""
        self.closed = True
        self._buffer.clear()
        self._handle.close()
        self.path.unlink(missing_ok=True)

    def __enter__(self) -> SealedWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _write_all(fd: int, parts: list) -> None:
    """Write ``parts`` with as few system calls as the kernel allows (normally one)."""
    total = sum(len(p) for p in parts)
    done = os.writev(fd, parts)
    if done < total:  # a short write: finish it piece by piece
        rest = memoryview(b"".join(bytes(p) for p in parts))[done:]
        while rest:
            rest = rest[os.write(fd, rest) :]


def seal_stream(path: str | Path, chunks: Iterator[bytes]) -> SealedWriter:
    """Seal an iterable of byte strings into ``path``; the returned writer is closed."""
    with SealedWriter(path) as writer:
        for chunk in chunks:
            writer.write(chunk)
    return writer


def is_sealed(path: str | Path) -> bool:
    try:
        with open(path, "rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except FileNotFoundError:
        return False


class SealedReader:
    """Random access to a sealed file's plaintext: ``size``, ``read()``, ``seek()`` and
    ``iter_range()`` (64 KiB at a time). Opening checks the key and the last chunk, and with it
    ``sealed_sha256``, the plaintext's SHA-256 as the writer computed it ("" for an unfinished
    file)."""

    def __init__(
        self,
        path: str | Path,
        *,
        masters: dict[bytes, MasterKey] | None = None,
        unfinished: bool = False,
    ) -> None:
        self._path = path  # a Path only when asked for (errors, logs): serving opens many
        # unfinished: a file whose writer never closed (a crash): read the whole chunks written
        # so far, each still authenticated, and drop what follows them
        self.unfinished = unfinished
        self._handle = open(path, "rb", buffering=0)  # noqa: SIM115 (closed in close())
        self._fd = self._handle.fileno()
        try:
            header = os.pread(self._fd, HEADER.size, 0)
            if len(header) < HEADER.size or not header.startswith(MAGIC):
                raise SealError(f"{self.path.name} is not a sealed file")
            _magic, self.file_id, self.chunk_size, self._digest, slot = HEADER.unpack(header)
            self._aead = _data_aead(slot, self.file_id, masters or known_masters())
            stat = os.fstat(self._fd)
            # this file as it is now: another file, or this one changed, is another identity
            self.identity = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, header)
            body = stat.st_size - HEADER.size
            self._stride = stride = self.chunk_size + NONCE + TAG
            if unfinished:
                self.chunks = body // stride
                self.size = self.chunks * self.chunk_size
            else:
                self.chunks = max(1, -(-body // stride))
                last = body - (self.chunks - 1) * stride - NONCE - TAG
                if body < NONCE + TAG or last < 0:
                    raise SealError(f"{self.path.name} is cut short")
                self.size = (self.chunks - 1) * self.chunk_size + last
                if not _TAIL_CHECKED.get(self.identity):
                    # a file cut at a chunk boundary, or a changed digest, fails here
                    self._chunk(self.chunks - 1)
                    _TAIL_CHECKED.put(self.identity, True)
        except BaseException:
            self._handle.close()
            raise
        self._position = 0
        self._buffer: bytearray | None = None  # for iter_range, made on its first read
        self.closed = False

    @property
    def path(self) -> Path:
        return Path(self._path)

    @property
    def sealed_sha256(self) -> str:
        return "" if self.unfinished else self._digest.hex()

    def _open_chunk(self, index: int, raw: bytes | memoryview) -> bytes:
        final = index == self.chunks - 1 and not self.unfinished
        aad = CHUNK_AAD.pack(self.file_id, index, 1 if final else 0)
        if final:
            aad += self._digest
        try:
            return self._aead.decrypt(raw[:NONCE], raw[NONCE:], aad)
        except InvalidTag as exc:
            raise SealError(f"chunk {index} of {self.path.name} fails authentication") from exc

    def _chunk(self, index: int) -> bytes:
        raw = os.pread(self._fd, self._stride, HEADER.size + index * self._stride)
        return self._open_chunk(index, memoryview(raw))

    def iter_range(self, start: int = 0, end: int | None = None) -> Iterator[bytes]:
        """Plaintext bytes ``start`` .. ``end`` (exclusive), a chunk at a time; the chunks
        are read ``READ_CHUNKS`` at a time."""
        end = self.size if end is None else min(end, self.size)
        if start >= end:
            return
        first = start // self.chunk_size
        last = (end - 1) // self.chunk_size
        stride = self._stride
        index = first
        while index <= last:
            count = min(READ_CHUNKS, last - index + 1)
            # into the reader's own buffer: a fresh 256 KiB object for every read would be mapped
            # and unmapped by the allocator each time, and fault in page by page
            if self._buffer is None:
                self._buffer = bytearray(READ_CHUNKS * stride)
            read = os.preadv(self._fd, [self._buffer], HEADER.size + index * stride)
            raw = memoryview(self._buffer)[: min(read, count * stride)]
            if -(-len(raw) // stride) < count:  # the file shrank since it was opened
                raise SealError(f"{self.path.name} is cut short")
            for at in range(0, len(raw), stride):
                data = self._open_chunk(index, raw[at : at + stride])
                chunk_start = index * self.chunk_size
                if chunk_start < start or chunk_start + len(data) > end:
                    data = data[max(0, start - chunk_start) : end - chunk_start]
                index += 1
                if data:
                    yield data

    # --- file-object protocol (Django's File, zipfile, PIL)
    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._position, 2: self.size}[whence]
        self._position = max(0, base + offset)
        return self._position

    def read(self, size: int = -1) -> bytes:
        end = self.size if size is None or size < 0 else self._position + size
        data = b"".join(self.iter_range(self._position, end))
        self._position += len(data)
        return data

    def sha256(self) -> str:
        digest = hashlib.sha256()
        for data in self.iter_range():
            digest.update(data)
        return digest.hexdigest()

    def close(self) -> None:
        self.closed = True
        self._handle.close()

    def __enter__(self) -> SealedReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def rewrap(path: str | Path, *, masters: dict[bytes, MasterKey], to: MasterKey) -> bool:
    """Re-wrap a sealed file's data key under ``to``; rewrites the 68-byte key slot only.
    False if it was already wrapped under ``to``."""
    with open(path, "r+b") as handle:
        header = handle.read(HEADER.size)
        if len(header) < HEADER.size or not header.startswith(MAGIC):
            raise SealError(f"{Path(path).name} is not a sealed file")
        _magic, file_id, _chunk, _digest, slot = HEADER.unpack(header)
        if slot[:8] == to.key_id:
            return False
        key = _unwrap(slot, file_id, masters)
        handle.seek(KEY_SLOT_OFFSET)
        handle.write(_wrap(to, file_id, key))
        handle.flush()
        os.fsync(handle.fileno())
    return True


def master_key_of(path: str | Path) -> str:
    with open(path, "rb") as handle:
        header = handle.read(HEADER.size)
    return HEADER.unpack(header)[4][:8].hex()
