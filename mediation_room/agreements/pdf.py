"""The agreement as a PDF: Chinese typesetting with a CJK font from the system's font packages
(fonts-noto-cjk, or fonts-wqy-zenhei, which reportlab can embed), the terms, the signatures with
their times, the hash and a QR code that opens the public verify page."""

from __future__ import annotations

import io
from functools import cache
from xml.sax.saxutils import escape

import qrcode
from django.conf import settings
from django.utils import timezone
from reportlab.lib import colors
from reportlab.lib.enums import TA_CENTER
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle
from reportlab.lib.units import mm
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.platypus import Image, Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from . import content as doc
from .models import Agreement

# Noto Sans CJK ships CFF outlines, which reportlab cannot embed; WenQuanYi Zen Hei is TrueType.
# Both come from Debian packages; nothing is downloaded.
FONT_CANDIDATES = (
    ("/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc", 2),  # subfont 2: SC
    ("/usr/share/fonts/truetype/wqy/wqy-zenhei.ttc", 0),
)
FONT_NAME = "AgreementCJK"


@cache
def cjk_font() -> str:
    errors = []
    for path, index in FONT_CANDIDATES:
        try:
            pdfmetrics.registerFont(TTFont(FONT_NAME, path, subfontIndex=index))
        except Exception as exc:  # noqa: BLE001 - try the next font package
            errors.append(f"{path}: {exc}")
            continue
        return FONT_NAME
    raise RuntimeError("no usable CJK font: " + "; ".join(errors))


def verify_url(agreement: Agreement) -> str:
    return f"{settings.SITE_URL}/verify/{agreement.code}/"


def qr_png(url: str) -> bytes:
    """The QR code embedded in the PDF (also what the tests decode)."""
    qr = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=8, border=4)
    qr.add_data(url)
    qr.make(fit=True)
    image = qr.make_image(fill_color="black", back_color="white")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def render_pdf(agreement: Agreement) -> bytes:
    font = cjk_font()
    version = agreement.final_version
    content = version.content
    body = ParagraphStyle("body", fontName=font, fontSize=11, leading=18, wordWrap="CJK")
    small = ParagraphStyle("small", parent=body, fontSize=8.5, leading=12)
    heading = ParagraphStyle("h", parent=body, fontSize=12.5, leading=20, spaceBefore=6)
    title = ParagraphStyle("title", parent=body, fontSize=20, leading=28, alignment=TA_CENTER)
    mono = ParagraphStyle("mono", fontName="Courier", fontSize=8, leading=11)

    def p(text: str, style: ParagraphStyle = body) -> Paragraph:
        return Paragraph(escape(text).replace("\n", "<br/>"), style)

    story: list = [p(content.get("title", doc.TITLE), title), Spacer(1, 4 * mm)]
    story.append(
        p(
            f"案件编号：{content['case']['tracking_number']}　纠纷类型："
            f"{content['case']['category_label']}　协议编号：{agreement.code}",
            small,
        )
    )
    story.append(Spacer(1, 3 * mm))
    for party in content.get("parties", []):
        story.append(p(f"{party['role_label']}：{party['name']}"))
    story.append(p(f"人民调解员：{content.get('mediator', {}).get('name', '')}"))
    story.append(p("纠纷事实：", heading))
    story.append(p(content.get("facts", "")))
    story.append(p("经人民调解委员会主持调解，双方当事人自愿达成如下协议：", heading))
    for n, term in enumerate(content.get("terms", []), start=1):
        story.append(p(f"{doc.ordinal(n)}、{doc.term_sentence(content, term)}"))
    story.append(p("履行方式及核查：", heading))
    story.append(p(content.get("performance_check", "")))
    story.append(p("协议效力：", heading))
    story.append(p(content.get("effect", "")))
    story.append(Spacer(1, 5 * mm))

    rows = [[p("签署人", small), p("签名", small), p("签署时间（北京时间）", small)]]
    for sig in agreement.signatures.filter(version=version).order_by("signed_at", "pk"):
        if sig.method == sig.Method.DRAWN and sig.image:
            reader = ImageReader(io.BytesIO(bytes(sig.image)))
            w, h = reader.getSize()
            scale = min(45 * mm / w, 14 * mm / h)
            mark = Image(io.BytesIO(bytes(sig.image)), width=w * scale, height=h * scale)
        else:
            mark = p(f"{sig.typed_name}（键入）")
        role = doc.ROLE_LABELS.get(sig.role, sig.role)
        when = timezone.localtime(sig.signed_at).strftime("%Y-%m-%d %H:%M:%S")
        rows.append([p(f"{role}：{sig.name}"), mark, p(when)])
    table = Table(rows, colWidths=[50 * mm, 60 * mm, 55 * mm])
    table.setStyle(
        TableStyle(
            [
                ("GRID", (0, 0), (-1, -1), 0.5, colors.grey),
                ("VALIGN", (0, 0), (-1, -1), "MIDDLE"),
            ]
        )
    )
    story.append(table)
    story.append(Spacer(1, 5 * mm))
    locked = timezone.localtime(agreement.locked_at).strftime("%Y-%m-%d %H:%M:%S")
    story.append(p(f"锁定时间：{locked}　账本序号：{agreement.seq}", small))
    story.append(p("SHA-256 校验值：", small))
    story.append(Paragraph(agreement.hash, mono))
    story.append(Paragraph(f"prev: {agreement.prev_hash}", mono))
    url = verify_url(agreement)
    story.append(Spacer(1, 3 * mm))
    qr = Image(io.BytesIO(qr_png(url)), width=32 * mm, height=32 * mm)
    story.append(
        Table(
            [[qr, p(f"扫描二维码或访问 {url} 核验本协议的真实性与完整性。", small)]],
            colWidths=[36 * mm, 129 * mm],
        )
    )

    out = io.BytesIO()
    SimpleDocTemplate(
        out,
        pagesize=A4,
        title=f"人民调解协议书 {content['case']['tracking_number']}",
        leftMargin=20 * mm,
        rightMargin=20 * mm,
        topMargin=18 * mm,
        bottomMargin=18 * mm,
        invariant=1,
    ).build(story)
    return out.getvalue()
