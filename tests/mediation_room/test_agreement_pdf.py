import io
import zipfile

import cv2
import numpy as np
from pypdf import PdfReader

from mediation_room.agreements import services
from mediation_room.agreements.pdf import qr_png, verify_url
from tests.mediation_room.agreement_fixtures import *  # noqa: F403 (fixtures)


def _pdf(agreement) -> PdfReader:
    with agreement.pdf.open("rb") as f:
        return PdfReader(io.BytesIO(f.read()))


def _decode_qr(png: bytes) -> str:
    image = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_COLOR)
    text, _points, _ = cv2.QRCodeDetector().detectAndDecode(image)
    return text


def test_pdf_has_the_chinese_terms_the_hash_and_a_qr_code_to_the_verify_page(
    setup, django_capture_on_commit_callbacks
):
    agreement = setup.locked(django_capture_on_commit_callbacks)
    reader = _pdf(agreement)
    text = "".join(page.extract_text() for page in reader.pages)
    squashed = "".join(text.split())
    assert "人民调解协议书" in squashed
    assert "被申请人李四于" in squashed and "向申请人支付拖欠工资" in squashed
    assert "¥12,000.00" in squashed
    assert "第三十一条" in squashed and "第三十三条" in squashed
    assert agreement.hash in squashed
    assert agreement.code in squashed

    # The QR code embedded in the page decodes to the verify URL.
    url = verify_url(agreement)
    decoded = set()
    for page in reader.pages:
        for image in page.images:
            buffer = io.BytesIO()
            image.image.convert("RGB").save(buffer, format="PNG")
            decoded.add(_decode_qr(buffer.getvalue()))
    assert url in decoded
    assert url.endswith(f"/verify/{agreement.code}/")
    assert _decode_qr(qr_png(url)) == url


def test_pdf_task_is_idempotent(setup, django_capture_on_commit_callbacks):
    agreement = setup.locked(django_capture_on_commit_callbacks)
    name = agreement.pdf.name
    assert services.agreement_pdf_render(agreement_id=agreement.pk) == "exists"
    agreement.refresh_from_db()
    assert agreement.pdf.name == name


def test_judicial_confirmation_bundle(setup, django_capture_on_commit_callbacks):
    agreement = setup.locked(django_capture_on_commit_callbacks)
    data = services.judicial_bundle_export(agreement=agreement, actor=setup.coordinator)
    archive = zipfile.ZipFile(io.BytesIO(data))
    names = set(archive.namelist())
    assert {"agreement.pdf", "case_summary.txt", "consents.txt", "manifest.json"} <= names
    summary = archive.read("case_summary.txt").decode()
    assert setup.case.tracking_number in summary and agreement.hash in summary
    consents = archive.read("consents.txt").decode()
    assert "张三" in consents and "李四" in consents
    assert archive.read("agreement.pdf").startswith(b"%PDF")
