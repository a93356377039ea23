"""Reads about agreements for pages, the live consumer and the public verify page."""

from __future__ import annotations

from typing import Any

from django.http import Http404
from django.utils import timezone

from accounts.models import User

from ..models import Case
from ..selectors import access_case_for_user, case_role_for_user
from . import content as doc
from . import ledger
from .models import Agreement, AgreementComment, AgreementVersion, FollowUp
from .services import required_signers

# Who may see an agreement's draft and comments: the case's parties, mediator and coordinators.
READER_ROLES = frozenset({"applicant", "respondent", "expert", "coordinator", "admin"})


def current_agreement(case: Case) -> Agreement | None:
    """The agreement being drafted or signed, else the locked one, else the last refused one."""
    agreements = case.agreements.select_related("final_version")
    return (
        agreements.filter(state__in=[Agreement.State.DRAFT, Agreement.State.SIGNING]).first()
        or agreements.filter(state=Agreement.State.LOCKED).order_by("-locked_at").first()
        or agreements.order_by("-created_at").first()
    )


def access_agreement_for_user(
    user: User, tracking_number: str
) -> tuple[Case, str, Agreement | None]:
    """The case, the user's role and the current agreement, or 404 for anyone outside the case."""
    case, role = access_case_for_user(user, tracking_number)
    if role not in READER_ROLES:
        raise Http404
    return case, role, current_agreement(case)


def can_subscribe(user: User, tracking_number: str) -> int | None:
    """The case id when the user may follow the agreement live, else None."""
    if not user or not user.is_authenticated:
        return None
    case = Case.objects.filter(tracking_number=tracking_number).first()
    if case is None or case_role_for_user(case, user) not in READER_ROLES:
        return None
    return case.pk


def shown_version(agreement: Agreement) -> AgreementVersion:
    """The text people are looking at: the signed one once locked, else the newest draft."""
    if agreement.state == Agreement.State.LOCKED and agreement.final_version:
        return agreement.final_version
    return agreement.versions.order_by("-number").first()


def document(version: AgreementVersion) -> dict[str, Any]:
    """A version ready to show: its lines, its terms in words. JSON-safe (goes over WebSocket)."""
    content = version.content
    return {
        "version": version.number,
        "saved_at": timezone.localtime(version.created_at).strftime("%Y-%m-%d %H:%M"),
        "title": content.get("title", doc.TITLE),
        "parties": [f"{p['role_label']}：{p['name']}" for p in content.get("parties", [])],
        "mediator": content.get("mediator", {}).get("name", ""),
        "facts": content.get("facts", ""),
        "terms": [
            {
                "key": term["key"],
                "number": doc.ordinal(n),
                "text": doc.term_sentence(content, term),
            }
            for n, term in enumerate(content.get("terms", []), start=1)
        ],
        "performance_check": content.get("performance_check", ""),
        "effect": content.get("effect", ""),
    }


def comments(agreement: Agreement) -> list[dict[str, Any]]:
    rows = AgreementComment.objects.filter(agreement=agreement).select_related("version")
    return [
        {
            "id": c.pk,
            "term": c.term_key,
            "role": doc.ROLE_LABELS.get(c.author_role, c.author_role),
            "kind": c.kind,
            "kind_label": str(c.get_kind_display()),
            "body": c.body,
            "version": c.version.number,
            "at": timezone.localtime(c.created_at).strftime("%m-%d %H:%M"),
        }
        for c in rows.order_by("created_at", "pk")[:500]
    ]


def signing_status(agreement: Agreement) -> list[dict[str, Any]]:
    signed = {}
    if agreement.final_version_id:
        signed = {
            s.signer_id: s
            for s in agreement.signatures.filter(version_id=agreement.final_version_id)
        }
    out = []
    for signer in required_signers(agreement.case):
        sig = signed.get(signer.user.pk) if signer.user else None
        out.append(
            {
                "role": doc.ROLE_LABELS.get(signer.role, signer.role),
                "name": signer.name,
                "user_id": signer.user.pk if signer.user else None,
                "joined": signer.user is not None,
                "signed_at": timezone.localtime(sig.signed_at).strftime("%Y-%m-%d %H:%M")
                if sig
                else "",
            }
        )
    return out


def live_snapshot(case_id: int) -> dict[str, Any] | None:
    """What the live page shows, for the WebSocket consumer."""
    case = Case.objects.filter(pk=case_id).first()
    agreement = current_agreement(case) if case else None
    if agreement is None:
        return None
    version = shown_version(agreement)
    return {
        "agreement": agreement.code,
        "state": agreement.state,
        "state_label": str(agreement.get_state_display()),
        "document": document(version),
        "comments": comments(agreement),
        "signatures": [
            {k: v for k, v in s.items() if k != "user_id"} for s in signing_status(agreement)
        ],
    }


def follow_ups(agreement: Agreement):
    return agreement.follow_ups.prefetch_related("answers__party").order_by("due_at", "pk")


def follow_up_for_party(user: User, tracking_number: str, pk: int) -> tuple[FollowUp, Any]:
    case, role = access_case_for_user(user, tracking_number)
    party = case.parties.filter(user=user).first()
    follow_up = (
        FollowUp.objects.filter(pk=pk, agreement__case=case)
        .select_related("agreement__case")
        .first()
    )
    if follow_up is None or party is None:
        raise Http404
    return follow_up, party


def normalize_code(raw: str) -> str:
    text = "".join(ch for ch in (raw or "").upper() if ch.isalnum())
    # Read-aloud confusions the alphabet excludes.
    return text.replace("O", "0").replace("I", "1").replace("L", "1")[:16]


def initials(name: str) -> str:
    """张三 → 张某: the public page never shows a full name."""
    name = (name or "").strip()
    return f"{name[:1]}某" if name else "某"


def verification(code: str) -> dict[str, Any] | None:
    """The public answer about an agreement code, or None when no locked agreement has it."""
    code = normalize_code(code)
    if len(code) != 12:
        return None
    agreement = (
        Agreement.objects.filter(code=code, locked_at__isnull=False)
        .select_related("case", "final_version")
        .first()
    )
    if agreement is None:
        return None
    genuine = ledger.verify_one(agreement)
    if genuine and agreement.seq and agreement.seq > 1:
        previous = Agreement.objects.filter(seq=agreement.seq - 1).only("hash").first()
        genuine = previous is not None and previous.hash == agreement.prev_hash
    content = agreement.final_version.content
    return {
        "code": agreement.code,
        "genuine": genuine,
        "locked_at": agreement.locked_at,
        "category": content["case"]["category_label"],
        "hash": agreement.hash,
        "seq": agreement.seq,
        "initials": [
            f"{p['role_label']} {initials(p['name'])}" for p in content.get("parties", [])
        ],
    }
