"""Demo agreements, made through the real services: one draft being discussed, one waiting for
signatures (sign it yourself: the codes appear on the demo's text-message page)."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from ..models import Case, Status
from . import services

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
