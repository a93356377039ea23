"""Files at rest: sealed with a key of their own, readable only with the master key, never in
clear on disk; the served file is the upload, byte for byte."""

import hashlib
import os
import secrets
import tracemalloc
import warnings

import pytest
from asgiref.sync import async_to_sync
from asgiref.testing import ApplicationCommunicator
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import Client

from mediation_room.agreements.models import Agreement
from privacy.sealed import (
    CHUNK,
    DIGEST_OFFSET,
    HEADER,
    KEY_SLOT_OFFSET,
    NONCE,
    TAG,
    SealedReader,
    SealedWriter,
    SealError,
    master_key_of,
)
from privacy.serve import HashMismatch
from streaming.models import Evidence, Recording
from tests.asgi_http import http_scope
from tests.factories import UserFactory, advance, make_case, make_expert

from .conftest import MARKER, new_master_key
from .conftest import pdf_with_marker as _pdf

pytestmark = pytest.mark.django_db


def _plain(size: int) -> bytes:
    body = secrets.token_bytes(size)
    if size >= len(MARKER):
        at = size // 2 - len(MARKER) // 2
        body = body[:at] + MARKER + body[at + len(MARKER) :]
    return body


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5])
def test_a_sealed_file_reads_back_whole_and_by_range_and_never_holds_the_plaintext(
    media, tmp_path, size
):
    data = _plain(size)
    path = tmp_path / "f.bin"
    with SealedWriter(path) as writer:
        for at in range(0, size, 10_000):  # written in pieces that do not align with chunks
            writer.write(data[at : at + 10_000])

    assert writer.sha256 == hashlib.sha256(data).hexdigest() and writer.size == size
    assert path.read_bytes()[DIGEST_OFFSET : DIGEST_OFFSET + 32].hex() == writer.sha256
    with SealedWriter(tmp_path / "whole.bin") as whole:  # the same bytes in one write
        whole.write(data)
    with SealedReader(tmp_path / "whole.bin") as reader:
        assert reader.read() == data
    stored = path.read_bytes()
    assert MARKER not in stored
    with SealedReader(path) as reader:
        assert reader.size == size and reader.sealed_sha256 == writer.sha256
        assert reader.read() == data
        for start, end in [(0, 1), (CHUNK - 3, CHUNK + 3), (size // 3, size), (size - 1, size)]:
            if 0 <= start < end <= size:
                assert b"".join(reader.iter_range(start, end)) == data[start:end]


def test_a_wrong_master_key_fails_loudly(media, tmp_path, settings):
    path = tmp_path / "f.bin"
    with SealedWriter(path) as writer:
        writer.write(MARKER)

    settings.FILE_MASTER_KEY = new_master_key()
    with pytest.raises(SealError, match="not configured"):
        SealedReader(path)


def _sealed(path, chunks: int) -> bytes:
    data = _plain(chunks * CHUNK)
    with SealedWriter(path) as writer:
        writer.write(data)
    return data


def _flip(stored: bytes, at: int) -> bytes:
    return stored[:at] + bytes([stored[at] ^ 1]) + stored[at + 1 :]


def test_reordered_truncated_or_altered_chunks_fail_authentication(media, tmp_path):
    path = tmp_path / "f.bin"
    _sealed(path, 3)
    stored = path.read_bytes()
    head, body = stored[: HEADER.size], stored[HEADER.size :]
    stride = CHUNK + NONCE + TAG
    chunks = [body[i : i + stride] for i in range(0, len(body), stride)]

    variants = {
        "swapped": head + chunks[1] + chunks[0] + chunks[2],
        "last chunk dropped": head + chunks[0] + chunks[1],
        "cut inside a chunk": stored[:-100],
        "a bit flipped": stored[:-50] + bytes([stored[-50] ^ 1]) + stored[-49:],
        "key slot altered": _flip(stored, KEY_SLOT_OFFSET + 30),
        "sealed hash altered": _flip(stored, DIGEST_OFFSET + 3),
    }
    for name, content in variants.items():
        path.write_bytes(content)
        with pytest.raises(SealError):
            with SealedReader(path) as reader:
                reader.read()
        assert name


def test_rotation_rewraps_every_key_and_keeps_every_file_readable(media, settings, tmp_path):
    # given evidence, a recording and an agreement PDF sealed under the old master key
    paths = {}
    for name in ("private/evidence/1/a.png", "private/recordings/h/r.mp4", "agreements/x.pdf"):
        paths[name] = settings.MEDIA_ROOT / name
        paths[name].parent.mkdir(parents=True, exist_ok=True)
    data = {name: _sealed(path, 2) for name, path in paths.items()}
    applicant, expert = UserFactory(), make_expert()
    case = make_case(applicant=applicant)
    hearing = advance(case, "scheduled", expert=expert)
    Evidence.objects.create(
        case=case,
        hearing=hearing,
        uploaded_by=applicant,
        uploader_role="applicant",
        title="t",
        file="private/evidence/1/a.png",
        content_type="image/png",
        size=2 * CHUNK,
        sha256=hashlib.sha256(data["private/evidence/1/a.png"]).hexdigest(),
    )
    Recording.objects.create(
        hearing=hearing,
        file="private/recordings/h/r.mp4",
        sha256="",
        duration=1,
        size=2 * CHUNK,
        started_at=hearing.created_at,
    )
    agreement = Agreement.objects.create(case=case)
    Agreement.objects.filter(pk=agreement.pk).update(pdf="agreements/x.pdf")
    old_key = settings.FILE_MASTER_KEY
    old_id = master_key_of(paths["agreements/x.pdf"])
    bodies = {name: path.read_bytes()[HEADER.size :] for name, path in paths.items()}

    # when the master key changes and the command re-wraps
    settings.FILE_MASTER_KEY = new_master_key()
    settings.FILE_MASTER_KEYS_RETIRED = [old_key]
    call_command("rotate_file_keys", stdout=open(os.devnull, "w"))  # noqa: SIM115

    # then every file reads with the new key alone, and no content byte was rewritten
    settings.FILE_MASTER_KEYS_RETIRED = []
    for name, path in paths.items():
        assert master_key_of(path) != old_id
        assert path.read_bytes()[HEADER.size :] == bodies[name]
        with SealedReader(path) as reader:
            assert reader.read() == data[name]
    # and the old key alone no longer opens them
    settings.FILE_MASTER_KEY = old_key
    with pytest.raises(SealError):
        SealedReader(paths["agreements/x.pdf"])


def test_rotation_without_the_old_key_fails_loudly_and_changes_nothing(media, settings):
    path = settings.MEDIA_ROOT / "agreements" / "y.pdf"
    path.parent.mkdir(parents=True)
    _sealed(path, 1)
    case = make_case()
    agreement = Agreement.objects.create(case=case)
    Agreement.objects.filter(pk=agreement.pk).update(pdf="agreements/y.pdf")
    before = path.read_bytes()

    settings.FILE_MASTER_KEY = new_master_key()
    with pytest.raises(CommandError, match="not configured"):
        call_command("rotate_file_keys", stdout=open(os.devnull, "w"))  # noqa: SIM115
    assert path.read_bytes() == before


@pytest.fixture
def room(media):
    applicant, respondent, expert = UserFactory(), UserFactory(), make_expert()
    case = make_case(applicant=applicant, respondent=respondent)
    hearing = advance(case, "scheduled", expert=expert)
    return {"hearing": hearing, "applicant": applicant, "expert": expert}


def test_uploaded_evidence_is_sealed_on_disk_and_served_byte_for_byte(client, room, settings):
    upload = _pdf(3 * 1024 * 1024)  # above FILE_UPLOAD_MAX_MEMORY_SIZE: still never spooled
    client.force_login(room["applicant"])
    response = client.post(
        f"/room/{room['hearing'].public_id}/evidence/",
        {"file": SimpleUploadedFile("bank.pdf", upload), "title": "银行流水"},
    )
    assert response.status_code == 201, response.content
    evidence = Evidence.objects.get()

    stored = (settings.MEDIA_ROOT / evidence.file.name).read_bytes()
    assert MARKER not in stored and not stored.startswith(b"%PDF")

    client.force_login(room["expert"])
    served = client.get(response.json()["url"])
    body = b"".join(served.streaming_content)
    assert served.status_code == 200 and served["Content-Type"] == "application/pdf"
    assert int(served["Content-Length"]) == len(upload)
    assert body == upload
    assert hashlib.sha256(body).hexdigest() == evidence.sha256


def test_an_evidence_file_that_no_longer_matches_its_hash_is_not_served(client, room, settings):
    client.force_login(room["applicant"])
    response = client.post(
        f"/room/{room['hearing'].public_id}/evidence/",
        {"file": SimpleUploadedFile("bank.pdf", _pdf(200_000)), "title": "x"},
    )
    url = response.json()["url"]
    assert len(b"".join(client.get(url).streaming_content)) == 200_000

    # the file swapped for another sealed file (its own key, so every chunk authenticates)
    evidence = Evidence.objects.get()
    path = settings.MEDIA_ROOT / evidence.file.name
    other = path.with_name("other.pdf")
    with SealedWriter(other) as writer:
        writer.write(_pdf(200_000))
    os.replace(other, path)
    with pytest.raises(HashMismatch):
        client.get(url)  # refused before a byte is sent
    with pytest.raises(HashMismatch):
        client.get(url, HTTP_RANGE="bytes=0-99")

    # the sealed hash rewritten to the row's: the last chunk no longer authenticates
    with open(path, "r+b") as handle:
        handle.seek(DIGEST_OFFSET)
        handle.write(bytes.fromhex(evidence.sha256))
    with pytest.raises(SealError):
        client.get(url)

    Evidence.objects.update(sha256="0" * 64)
    with pytest.raises((HashMismatch, SealError)):
        client.get(url)


def test_a_recording_is_served_with_byte_ranges(client, room, settings):
    data = _plain(3 * CHUNK + 1000)
    recording = _recording(room, settings, data)
    url = f"/room/{room['hearing'].public_id}/recordings/{recording.public_id}/"
    client.force_login(room["applicant"])

    whole = client.get(url)
    assert whole.status_code == 200 and whole["Accept-Ranges"] == "bytes"
    assert b"".join(whole.streaming_content) == data
    part = client.get(url, HTTP_RANGE=f"bytes={CHUNK - 10}-{2 * CHUNK + 9}")
    assert part.status_code == 206
    assert part["Content-Range"] == f"bytes {CHUNK - 10}-{2 * CHUNK + 9}/{len(data)}"
    assert b"".join(part.streaming_content) == data[CHUNK - 10 : 2 * CHUNK + 10]
    tail = client.get(url, HTTP_RANGE="bytes=-100")
    assert b"".join(tail.streaming_content) == data[-100:]
    assert client.get(url, HTTP_RANGE=f"bytes={len(data)}-").status_code == 416


def _recording(room, settings, data: bytes) -> Recording:
    path = settings.MEDIA_ROOT / "private" / "recordings" / "r.mp4"
    with SealedWriter(path) as writer:
        writer.write(data)
    return Recording.objects.create(
        hearing=room["hearing"],
        file="private/recordings/r.mp4",
        sha256=writer.sha256,
        duration=1,
        size=len(data),
        started_at=room["hearing"].created_at,
    )


# the ASGI handler gives each request a thread (and database connection) of its own
@pytest.mark.django_db(transaction=True)
def test_under_asgi_a_recording_streams_a_batch_at_a_time_never_whole(client, room, settings):
    from asgi import application

    data = secrets.token_bytes(16 * 1024 * 1024)
    recording = _recording(room, settings, data)
    client.force_login(room["applicant"])
    path = f"/room/{room['hearing'].public_id}/recordings/{recording.public_id}/"
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    scope = http_scope(path, headers=[(b"cookie", cookie.encode())])

    async def run(*extra: tuple[bytes, bytes]) -> tuple[dict, list[int], bytes]:
        communicator = ApplicationCommunicator(
            application, {**scope, "headers": scope["headers"] + list(extra)}
        )
        await communicator.send_input({"type": "http.request", "body": b""})
        start = await communicator.receive_output(10)
        sizes, digest = [], hashlib.sha256()
        while True:
            message = await communicator.receive_output(10)
            sizes.append(len(message.get("body", b"")))
            digest.update(message.get("body", b""))
            if not message.get("more_body"):
                return start, sizes, digest.digest()

    # a first request loads what every request needs (URLs, translations): not part of a file
    assert async_to_sync(run)((b"range", b"bytes=0-99"))[0]["status"] == 206
    tracemalloc.start()
    try:
        with warnings.catch_warnings():
            # Django's fallback for a synchronous iterator reads it whole into a list first
            warnings.filterwarnings("error", message=".*consume synchronous iterators.*")
            start, sizes, digest = async_to_sync(run)()
        _now, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert start["status"] == 200, dict(start["headers"])
    assert digest == hashlib.sha256(data).digest() and sum(sizes) == len(data)
    assert len([size for size in sizes if size]) > 16
    assert peak < len(data) // 4, f"{peak / 2**20:.1f} MiB held while serving 16 MiB"


def test_seal_files_migrates_files_kept_in_clear(room, settings):
    upload = _pdf(150_000)
    path = settings.MEDIA_ROOT / "private" / "evidence" / "old.pdf"
    path.parent.mkdir(parents=True)
    path.write_bytes(upload)
    evidence = Evidence.objects.create(
        case=room["hearing"].case,
        hearing=room["hearing"],
        uploaded_by=room["applicant"],
        uploader_role="applicant",
        title="old",
        file="private/evidence/old.pdf",
        content_type="application/pdf",
        size=len(upload),
        sha256=hashlib.sha256(upload).hexdigest(),
    )

    call_command("seal_files", stdout=open(os.devnull, "w"))  # noqa: SIM115
    call_command("seal_files", stdout=open(os.devnull, "w"))  # noqa: SIM115 (idempotent)

    assert MARKER not in path.read_bytes()
    with evidence.file.open("rb") as handle:
        assert handle.read() == upload


def test_the_sealing_evidence_upload_still_checks_the_csrf_token(room):
    strict = Client(enforce_csrf_checks=True)
    strict.force_login(room["applicant"])
    response = strict.post(
        f"/room/{room['hearing'].public_id}/evidence/",
        {"file": SimpleUploadedFile("bank.pdf", _pdf(20_000)), "title": "x"},
    )
    assert response.status_code == 403 and not Evidence.objects.exists()
