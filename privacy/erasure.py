"""A person asks for their data to be deleted (个人信息保护法 第四十七条).

Deleted or anonymised at once: what no law obliges the platform to keep. Kept: what belongs to
a case file (人民调解法: the mediation record, the agreement and its signatures) until the case's
retention period ends, the proof of their consents for as long as the case is kept, and the
access log (网络安全法 第二十一条). The answer lists every kind of data with what happened to it
and why."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from accounts.models import Membership, Notification, User
from mediation_room.agreements.models import AgreementSignature
from mediation_room.models import TERMINAL, Case, Party
from streaming.models import Evidence
from voting.models import Comment, MediationRating, PollVote

from .models import AccessLog, ErasureRequest
from .retention import anonymous_user

ITEM_LABELS = {
    "live_comments": gettext_lazy("Live comments"),
    "messages_in_app": gettext_lazy("Messages in your inbox"),
    "text_messages": gettext_lazy("Text messages sent to you"),
    "community_memberships": gettext_lazy("Community memberships"),
    "open_poll_votes": gettext_lazy("Votes in open polls"),
    "closed_poll_votes": gettext_lazy("Votes in closed polls"),
    "rating_remarks": gettext_lazy("Remarks in your ratings"),
    "case_party_records": gettext_lazy("Your part in your cases"),
    "consent_receipts": gettext_lazy("Consent receipts"),
    "evidence": gettext_lazy("Evidence you showed"),
    "signatures": gettext_lazy("Your signatures"),
    "signature_addresses": gettext_lazy("Network addresses of your signatures"),
    "access_log": gettext_lazy("Your openings of case files"),
    "account": gettext_lazy("Your account"),
}
ACTION_LABELS = {
    "deleted": gettext_lazy("deleted"),
    "anonymised": gettext_lazy("anonymised"),
    "kept": gettext_lazy("kept"),
}


def outcome_for_display(outcome: list[dict]) -> list[dict]:
    return [
        {
            **i,
            "label": ITEM_LABELS.get(i["item"], i["item"]),
            "action_label": ACTION_LABELS[i["action"]],
        }
        for i in outcome
    ]


@dataclass(frozen=True)
class ErasureItem:
    item: str
    action: str  # deleted | anonymised | kept
    count: int
    why: str
    until: str = ""


def _kept_until(cases: list[Case], kind: str) -> str:
    """The latest date any of the cases keeps ``kind``: closing + period; open cases: unknown."""
    if any(c.status not in TERMINAL for c in cases):
        return _("%(days)d days after the case closes") % {"days": settings.RETENTION_DAYS[kind]}
    latest = max(c.status_changed_at for c in cases) + timezone.timedelta(
        days=settings.RETENTION_DAYS[kind]
    )
    return timezone.localtime(latest).date().isoformat()


@transaction.atomic
def personal_data_erase(*, user: User, now: datetime | None = None) -> ErasureRequest:
    """The signed-in person erases their own data. Locks nothing shared; idempotent (a second
    request finds less to do). Returns the request with its item-by-item outcome."""
    if not user.is_authenticated:
        raise PermissionError("sign in first")
    now = now or timezone.now()
    items: list[ErasureItem] = []
    anonymous = anonymous_user()

    comments = Comment.objects.filter(author=user)
    n = comments.count()
    for pk in comments.values_list("pk", flat=True):
        Comment.objects.filter(pk=pk).update(
            author=anonymous, nickname="", text="", client_id=f"anonymised-{pk}"
        )
    items.append(
        ErasureItem(
            "live_comments",
            "anonymised",
            n,
            _("Text and nickname removed; the count of comments of each session stays."),
        )
    )
    inbox = Notification.objects.filter(user=user, channel="in_app")
    items.append(ErasureItem("messages_in_app", "deleted", inbox.delete()[0], ""))
    sent = Notification.objects.filter(user=user).exclude(channel="in_app")
    count = sent.update(phone="", email="", body="", subject="", link="", user=None)
    items.append(
        ErasureItem(
            "text_messages",
            "anonymised",
            count,
            _("Number and text removed; that a message was delivered stays for the figures."),
        )
    )
    items.append(
        ErasureItem(
            "community_memberships",
            "deleted",
            Membership.objects.filter(user=user).delete()[0],
            "",
        )
    )
    open_votes = PollVote.objects.filter(user=user).exclude(poll__state="closed")
    items.append(ErasureItem("open_poll_votes", "deleted", open_votes.delete()[0], ""))
    closed_votes = PollVote.objects.filter(user=user).count()
    if closed_votes:
        items.append(
            ErasureItem(
                "closed_poll_votes",
                "kept",
                closed_votes,
                _(
                    "Counted in a published poll result; once your account is erased it names no one."
                ),
            )
        )
    ratings = MediationRating.objects.filter(party__user=user)
    items.append(
        ErasureItem(
            "rating_remarks",
            "anonymised",
            ratings.exclude(comment="").update(comment=""),
            _("Your remarks removed; the score stays in the satisfaction figures."),
        )
    )

    cases = list(Case.objects.filter(parties__user=user).distinct())
    case_numbers = ", ".join(c.tracking_number for c in cases)
    record_why = _(
        "Part of the mediation record of %(cases)s, which the mediation committee must keep "
        "(People's Mediation Law); deleted when its retention period ends."
    ) % {"cases": case_numbers}
    if cases:
        parties = Party.objects.filter(user=user).count()
        items.append(
            ErasureItem(
                "case_party_records", "kept", parties, record_why, _kept_until(cases, "evidence")
            )
        )
        items.append(
            ErasureItem(
                "consent_receipts",
                "kept",
                sum(p.consent_receipts.count() for p in Party.objects.filter(user=user)),
                _("Proof of what you agreed to, kept as long as the case is."),
                _kept_until(cases, "evidence"),
            )
        )
    evidence = Evidence.objects.filter(uploaded_by=user).count()
    if evidence:
        items.append(
            ErasureItem("evidence", "kept", evidence, record_why, _kept_until(cases, "evidence"))
        )
    signatures = AgreementSignature.objects.filter(signer=user).count()
    if signatures:
        items.append(
            ErasureItem(
                "signatures",
                "kept",
                signatures,
                _("A signed agreement is the record of the settlement and is kept with it."),
            )
        )
        items.append(
            ErasureItem(
                "signature_addresses",
                "kept",
                signatures,
                record_why,
                _kept_until(cases, "signature_ips"),
            )
        )
    opened = AccessLog.objects.filter(actor=user).count()
    if opened:
        items.append(
            ErasureItem(
                "access_log",
                "kept",
                opened,
                _("Security log of who opened case files (Cybersecurity Law art. 21)."),
            )
        )

    # staff accounts are closed by the office that posted them, not by this request
    staff = user.is_staff or user.is_superuser or user.groups.exclude(name="party").exists()
    if cases or evidence or signatures or staff:
        items.append(
            ErasureItem(
                "account",
                "kept",
                1,
                _("Needed to show you your cases while their records are kept."),
            )
        )
    else:
        user.username = f"erased-{user.pk}"
        user.display_name = ""
        user.phone = None
        user.email = ""
        user.first_name = user.last_name = ""
        user.is_active = False
        user.set_unusable_password()
        user.save()
        items.append(ErasureItem("account", "anonymised", 1, _("You are signed out for good.")))

    return ErasureRequest.objects.create(
        user=user,
        user_ref=user.pk,
        requested_at=now,
        outcome=[asdict(i) for i in items],
    )
