"""The application bundle for judicial confirmation (司法确认, 人民调解法 第三十三条): the signed
agreement PDF, a summary of the case and the parties' consents, in one ZIP for the coordinator."""

from __future__ import annotations

import io
import json
import zipfile

from django.utils import timezone

from ..models import Consent
from . import content as doc
from .models import Agreement


def _local(dt) -> str:
    return timezone.localtime(dt).strftime("%Y-%m-%d %H:%M:%S") if dt else ""


def case_summary(agreement: Agreement) -> str:
    case = agreement.case
    content = agreement.final_version.content
    lines = [
        "司法确认申请材料 · 案件摘要",
        "",
        f"案件编号：{case.tracking_number}",
        f"纠纷类型：{content['case']['category_label']}",
        f"所属社区：{case.community}",
        f"登记时间：{_local(case.created_at)}",
        f"人民调解员：{content.get('mediator', {}).get('name', '')}",
        "",
        "当事人：",
    ]
    for party in content.get("parties", []):
        lines.append(f"  {party['role_label']}：{party['name']}")
    lines += ["", "纠纷事实：", content.get("facts", ""), "", "协议内容："]
    for n, term in enumerate(content.get("terms", []), start=1):
        lines.append(f"  {doc.ordinal(n)}、{doc.term_sentence(content, term)}")
    lines += ["", "签署情况："]
    for sig in agreement.signatures.filter(version=agreement.final_version).order_by("signed_at"):
        role = doc.ROLE_LABELS.get(sig.role, sig.role)
        lines.append(f"  {role} {sig.name}：{_local(sig.signed_at)}（{sig.get_method_display()}）")
    lines += [
        "",
        f"协议编号：{agreement.code}",
        f"锁定时间：{_local(agreement.locked_at)}",
        f"SHA-256：{agreement.hash}",
        "",
        "办理经过：",
    ]
    for event in case.events.order_by("created_at", "pk"):
        lines.append(f"  {_local(event.created_at)} {event.kind} {event.to_status}".rstrip())
    return "\n".join(lines) + "\n"


def consents_text(agreement: Agreement) -> str:
    lines = ["当事人授权与同意记录", ""]
    consents = Consent.objects.filter(party__case=agreement.case).select_related("party")
    for consent in consents.order_by("party__role", "party_id", "kind"):
        role = doc.ROLE_LABELS.get(consent.party.role, consent.party.role)
        answer = "同意" if consent.granted else "不同意"
        lines.append(
            f"{role} {consent.party.name}：{consent.get_kind_display()} — {answer}"
            f"（{_local(consent.decided_at)}）"
        )
    lines += ["", "协议签署确认（短信验证码核验身份后签名）："]
    for sig in agreement.signatures.filter(version=agreement.final_version).order_by("signed_at"):
        role = doc.ROLE_LABELS.get(sig.role, sig.role)
        lines.append(f"{role} {sig.name}：{_local(sig.signed_at)}")
    return "\n".join(lines) + "\n"


def build_zip(agreement: Agreement, pdf_bytes: bytes) -> bytes:
    manifest = {
        "case": agreement.case.tracking_number,
        "agreement": agreement.code,
        "hash": agreement.hash,
        "ledger_seq": agreement.seq,
        "generated_at": timezone.now().isoformat(),
        "files": ["agreement.pdf", "case_summary.txt", "consents.txt"],
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("agreement.pdf", pdf_bytes)
        archive.writestr("case_summary.txt", case_summary(agreement))
        archive.writestr("consents.txt", consents_text(agreement))
        archive.writestr("manifest.json", json.dumps(manifest, ensure_ascii=False, indent=2))
    return out.getvalue()
