"""Uploads of personal files are sealed as the multipart parser reads them (privacy.uploads): the
plaintext never reaches the disk, a kept upload is moved into place without a second pass, and
nothing is left behind by an upload that is refused or cut off."""

import hashlib
import io
import os
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.http.multipartparser import MultiPartParser
from django.test.client import BOUNDARY, MULTIPART_CONTENT, encode_multipart

from privacy.retention import retention_run
from privacy.sealed import SealedReader
from privacy.storage import sealed_storage
from privacy.uploads import (
    INCOMING_MAX_AGE,
    SealedUpload,
    SealingUploadHandler,
    incoming_dir,
    sweep_incoming,
)
from streaming.models import Evidence
from tests.factories import UserFactory, advance, make_case, make_expert

from .conftest import MARKER
from .conftest import pdf_with_marker as _pdf

pytestmark = pytest.mark.django_db


def _parse(body: bytes):
    meta = {"CONTENT_TYPE": MULTIPART_CONTENT, "CONTENT_LENGTH": str(len(body))}
    return MultiPartParser(meta, io.BytesIO(body), [SealingUploadHandler()]).parse()


def _incoming() -> list[str]:
    folder = incoming_dir()
    return sorted(os.listdir(folder)) if folder.exists() else []


def test_an_upload_is_sealed_as_it_is_read_and_kept_by_moving_that_very_file(media):
    data = _pdf(3 * 1024 * 1024 + 17)
    body = encode_multipart(BOUNDARY, {"file": SimpleUploadedFile("bank.pdf", data), "t": "x"})
    post, files = _parse(body)
    upload = files["file"]

    assert isinstance(upload, SealedUpload) and post["t"] == "x"
    assert upload.name == "bank.pdf" and upload.size == len(data)
    assert upload.sha256 == hashlib.sha256(data).hexdigest()
    (name,) = _incoming()
    sealed = (incoming_dir() / name).read_bytes()
    assert MARKER not in sealed and not sealed.startswith(b"%PDF")
    # it reads as the plaintext, for the checks a view makes before keeping it
    assert upload.read(9) == b"%PDF-1.4\n"
    upload.seek(0)
    assert b"".join(upload.chunks()) == data
    arrived = os.stat(incoming_dir() / name).st_ino

    storage = sealed_storage()
    kept = storage.save("evidence/bank.pdf", upload)
    upload.close()  # as Django does when the request ends

    assert _incoming() == []
    assert os.stat(storage.path(kept)).st_ino == arrived  # moved, not sealed a second time
    assert storage.sha256(kept) == upload.sha256
    with SealedReader(storage.path(kept)) as reader:
        assert reader.read() == data


def test_an_upload_kept_twice_is_sealed_again_from_its_plaintext_the_second_time(media):
    data = _pdf(200_000)
    _post, files = _parse(encode_multipart(BOUNDARY, {"file": SimpleUploadedFile("a.pdf", data)}))
    upload = files["file"]
    storage = sealed_storage()
    first, second = storage.save("a.pdf", upload), storage.save("a.pdf", upload)
    upload.close()

    assert first != second and _incoming() == []
    for name in (first, second):
        with SealedReader(storage.path(name)) as reader:
            assert reader.read() == data


def test_an_upload_not_kept_is_removed_when_the_request_ends(media):
    body = encode_multipart(BOUNDARY, {"file": SimpleUploadedFile("a.pdf", _pdf(100_000))})
    _post, files = _parse(body)
    assert len(_incoming()) == 1
    files["file"].close()
    assert _incoming() == []


def test_an_upload_cut_off_mid_file_leaves_nothing(media):
    body = encode_multipart(BOUNDARY, {"file": SimpleUploadedFile("a.pdf", _pdf(300_000))})
    # the client went away: the body ends inside the file and its closing boundary never comes
    _post, files = _parse(body[: len(body) // 2])
    assert "file" not in files
    assert _incoming() == []


def test_evidence_refused_or_kept_leaves_nothing_in_the_incoming_folder(client, media):
    applicant, expert = UserFactory(), make_expert()
    hearing = advance(
        make_case(applicant=applicant, respondent=UserFactory()), "scheduled", expert=expert
    )
    client.force_login(applicant)
    url = f"/room/{hearing.public_id}/evidence/"

    refused = client.post(url, {"file": SimpleUploadedFile("a.exe", b"MZ" + MARKER * 100)})
    assert refused.status_code == 400 and refused.json()["error"] == "bad_type"
    assert _incoming() == [] and not Evidence.objects.exists()

    data = _pdf(1_000_000)
    kept = client.post(url, {"file": SimpleUploadedFile("bank.pdf", data)})
    assert kept.status_code == 201, kept.content
    assert _incoming() == []
    evidence = Evidence.objects.get()
    assert evidence.sha256 == hashlib.sha256(data).hexdigest()
    stored = (media.MEDIA_ROOT / evidence.file.name).read_bytes()
    assert MARKER not in stored


def test_the_retention_run_sweeps_uploads_a_crash_left_behind(media):
    folder = incoming_dir()
    folder.mkdir(parents=True)
    old, fresh, other = folder / "a.upload", folder / "b.upload", folder / "notes.txt"
    for path in (old, fresh, other):
        path.write_bytes(b"sealed")
    stale = time.time() - INCOMING_MAX_AGE - 60
    os.utime(old, (stale, stale))
    os.utime(other, (stale, stale))

    report = retention_run()

    assert report.unbound.get("unfinished_uploads") == 1
    assert not old.exists() and fresh.exists() and other.exists()
    assert sweep_incoming(now=time.time() + INCOMING_MAX_AGE + 60) == 1  # the fresh one, later
