"""Demo agreements, made through the real services: one draft being discussed, one waiting for
signatures (sign it yourself: the codes appear on the demo's text-message page), and — through
:func:`agreement_sign_all`, called by the case demo at its "agree" step — the signed, locked
agreement (ledger entry, PDF with its QR code) of every agreed, followed-up and closed case."""

from __future__ import annotations

import re
from datetime import timedelta

from django.utils import timezone

from accounts.models import Notification

from ..models import Case, Status
from . import services
from .services import required_signers

CODE = re.compile(r"(?<![-\d])(\d{6})(?!\d)")

TERMS = [
    {
        "key": "t1",
        "obligor": "respondent",
        "action": "向申请人支付拖欠的劳动报酬",
        "amount": "12000",
        "due_days": 14,
    },
    {
        "key": "t2",
        "obligor": "respondent",
        "action": "向申请人书面致歉",
        "amount": "",
        "due_days": 7,
    },
    {
        "key": "t3",
        "obligor": "applicant",
        "action": "收到款项后出具收条",
        "amount": "",
        "due_days": 0,
    },
]


def _terms() -> list[dict]:
    today = timezone.localdate()
    return [
        {
            "key": t["key"],
            "obligor": t["obligor"],
            "action": t["action"],
            "amount": t["amount"],
            "due_date": (today + timedelta(days=t["due_days"])).isoformat()
            if t["due_days"]
            else "",
        }
        for t in TERMS
    ]


def _code_received(user) -> str:
    """The signing code as the signer's phone gets it: the text message queued for them."""
    body = (
        Notification.objects.filter(user=user, kind="signing_code")
        .order_by("-pk")
        .values_list("body", flat=True)
        .first()
    )
    return CODE.findall(body or "")[-1]


def agreement_sign_all(case: Case) -> None:
    """The mediator drafts and submits the agreement of a case in session, and each party and
    the mediator sign it with the code texted to them: the last signature locks it, chains it
    into the ledger and moves the case to "agreed". Its PDF (with the QR code) is rendered now."""
    agreement = services.agreement_start(case=case, actor=case.expert)
    services.agreement_save_draft(
        agreement=agreement,
        actor=case.expert,
        facts=case.description,
        terms=_terms(),
        performance_check="被申请人以银行转账方式付款，申请人收到后向人民调解委员会确认。",
        note="调解会议上双方同意",
    )
    services.agreement_submit(agreement=agreement, actor=case.expert)
    for signer in required_signers(case):
        agreement.refresh_from_db()
        services.signing_code_send(agreement=agreement, actor=signer.user)
        services.agreement_sign(
            agreement=agreement,
            actor=signer.user,
            version_number=agreement.final_version.number,
            code=_code_received(signer.user),
            typed_name=signer.name[:40] or str(signer.user),
            user_agent="demo",
        )
    services.agreement_pdf_render(agreement_id=agreement.pk)


def load(context: dict) -> list[str]:
    cases = [
        c
        for c in Case.objects.filter(status=Status.IN_SESSION, expert__isnull=False).order_by("pk")
        if not c.parties.filter(user__isnull=True).exists()
    ][:2]
    lines = []
    for n, case in enumerate(cases):
        agreement = services.agreement_start(case=case, actor=case.expert)
        services.agreement_save_draft(
            agreement=agreement,
            actor=case.expert,
            facts=case.description,
            terms=_terms(),
            performance_check="被申请人以银行转账方式付款，申请人收到后向人民调解委员会确认。",
            note="根据调解会议的讨论起草",
        )
        respondent = case.parties.get(role="respondent")
        services.agreement_comment(
            agreement=agreement,
            actor=respondent.user,
            body="一次付清有困难，能否分两期支付？",
            term_key="t1",
            kind="change",
        )
        if n == 1:
            services.agreement_submit(agreement=agreement, actor=case.expert)
        lines.append(
            f"Agreement {'awaiting signatures' if n == 1 else 'draft'}: "
            f"/cases/{case.tracking_number}/agreement/ (mediator {case.expert})"
        )
    return lines
