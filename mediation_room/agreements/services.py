"""Every write to an agreement: drafting, comments, signing, refusal, locking, follow-up.

Lock order, everywhere: the agreement row, then the hearing/case rows (through the lifecycle
services), then the ledger head. Each public function is atomic (or, where a failed attempt must
be remembered, commits that attempt before raising), checks who may act, writes its CaseEvent,
and sends messages and realtime updates only after commit.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import io
import ipaddress
import secrets
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from PIL import Image, UnidentifiedImageError

from accounts.models import Channel, User
from accounts.ratelimit import allow
from accounts.services import notification_send, notify_person

from .. import services as case_services
from ..errors import CaseError, NotPermitted, TransitionNotAllowed
from ..models import Case, Party, Status
from ..selectors import case_roles_for_user, open_hearing
from ..supervision_hooks import coordinators_for_case, open_supervision
from . import content as doc
from . import ledger
from .models import (
    Agreement,
    AgreementComment,
    AgreementSignature,
    AgreementVersion,
    FollowUp,
    FollowUpAnswer,
    LedgerHead,
    SignatureAddress,
    SigningChallenge,
)

# Drafting happens in the room (scheduled or in session) or right after the session concluded.
DRAFTABLE_STATUSES = frozenset({Status.SCHEDULED, Status.IN_SESSION, Status.AGREED})
SIGNING_CODE_TTL = timedelta(minutes=5)
SIGNING_CODE_MAX_ATTEMPTS = 5
SIGNING_CODES_PER_10_MIN = 3
MAX_SIGNATURE_BYTES = 200_000
MAX_SIGNATURE_SIDE = 2000
MAX_COMMENT = 1000
FOLLOW_UP_ANSWER_WINDOW = timedelta(days=3)


@dataclass(frozen=True)
class Signer:
    user: User | None
    role: str
    name: str
    party: Party | None


# --- reads the writes need ------------------------------------------------------------------------


def required_signers(case: Case) -> list[Signer]:
    """Every party (applicant first) and the mediator. A party who has not taken up the
    invitation has no user yet: the agreement cannot be completed until they do."""
    signers = [
        Signer(p.user, p.role, p.name, p)
        for p in case.parties.select_related("user").order_by("role", "pk")
    ]
    if case.expert_id:
        signers.append(Signer(case.expert, "expert", case.expert.display_name, None))
    return signers


def latest_version(agreement: Agreement) -> AgreementVersion:
    return agreement.versions.order_by("-number").first()


def _lock_agreement(agreement: Agreement) -> Agreement:
    return (
        Agreement.objects.select_for_update(of=("self",))
        .select_related("case", "final_version")
        .get(pk=agreement.pk)
    )


def _require_expert(case: Case, actor: User) -> None:
    if not actor.is_authenticated or case.expert_id != actor.pk:
        raise NotPermitted(_("Only the case's mediator can draft the agreement."))


def _require_open(agreement: Agreement) -> None:
    if agreement.state in (Agreement.State.LOCKED, Agreement.State.REFUSED):
        raise CaseError(_("This agreement is closed and cannot change."), code="locked")


def _link(case: Case, suffix: str = "") -> str:
    return f"{settings.SITE_URL}/cases/{case.tracking_number}/agreement/{suffix}"


# --- drafting -----------------------------------------------------------------------------------


@transaction.atomic
def agreement_start(*, case: Case, actor: User) -> Agreement:
    """The mediator starts the agreement from the template of the case's category (version 1).
    Returns the open agreement if there already is one."""
    case = Case.objects.select_for_update(of=("self",)).select_related("expert").get(pk=case.pk)
    _require_expert(case, actor)
    existing = case.agreements.filter(
        state__in=[Agreement.State.DRAFT, Agreement.State.SIGNING]
    ).first()
    if existing:
        return existing
    if case.status not in DRAFTABLE_STATUSES:
        raise TransitionNotAllowed(
            _("An agreement can be drafted once the session is scheduled."), code="bad_state"
        )
    agreement = Agreement.objects.create(case=case)
    AgreementVersion.objects.create(
        agreement=agreement, number=1, content=doc.from_template(case), author=actor
    )
    case_services.case_event_record(
        case=case, actor=actor, kind="agreement_started", data={"agreement": agreement.code}
    )
    return agreement


@transaction.atomic
def agreement_save_draft(
    *,
    agreement: Agreement,
    actor: User,
    facts: str,
    terms: list[dict[str, Any]],
    performance_check: str,
    note: str = "",
) -> AgreementVersion:
    """The mediator saves the text: a new version (unless nothing changed). Saving after the text
    was submitted for signature takes it back to draft; signatures given on the old text no
    longer count. Raises ValidationError (field -> message) on bad input."""
    agreement = _lock_agreement(agreement)
    case = agreement.case
    _require_expert(case, actor)
    _require_open(agreement)
    content = doc.normalize(case, facts=facts, terms=terms, check=performance_check)
    previous = latest_version(agreement)
    if previous and previous.content == content:
        return previous
    version = AgreementVersion.objects.create(
        agreement=agreement,
        number=(previous.number + 1) if previous else 1,
        content=content,
        author=actor,
        note=(note or "").strip()[:200],
    )
    if agreement.state == Agreement.State.SIGNING:
        agreement.state = Agreement.State.DRAFT
        agreement.final_version = None
        agreement.submitted_at = None
        agreement.save(update_fields=["state", "final_version", "submitted_at", "updated_at"])
    case_services.case_event_record(
        case=case,
        actor=actor,
        kind="agreement_version_saved",
        data={"agreement": agreement.code, "version": version.number},
    )
    return version


@transaction.atomic
def agreement_comment(
    *, agreement: Agreement, actor: User, body: str, term_key: str = "", kind: str = "comment"
) -> AgreementComment:
    """A party (or the mediator, answering) comments on the text or one term, or asks for a
    change. Only while the agreement is open."""
    agreement = Agreement.objects.select_related("case").get(pk=agreement.pk)
    _require_open(agreement)
    roles = case_roles_for_user(agreement.case, actor)
    author_role = next((r for r in ("applicant", "respondent", "expert") if r in roles), None)
    if author_role is None:
        raise NotPermitted(_("Only the parties and the mediator can comment on the draft."))
    body = (body or "").strip()
    if not body:
        raise CaseError(_("Write a comment first."), code="empty")
    if len(body) > MAX_COMMENT:
        raise CaseError(_("At most 1000 characters, please."), code="too_long")
    if kind not in AgreementComment.Kind.values:
        raise CaseError(_("Unknown kind of comment."), code="invalid")
    if not allow(f"agreement-comment:{actor.pk}", limit=20, period=60):
        raise CaseError(_("Too many comments in a short time; wait a minute."), code="rate")
    version = latest_version(agreement)
    if term_key and term_key not in {t["key"] for t in version.content.get("terms", [])}:
        raise CaseError(_("That term is not in the current draft."), code="bad_term")
    comment = AgreementComment.objects.create(
        agreement=agreement,
        version=version,
        term_key=term_key,
        author=actor,
        author_role=author_role,
        kind=kind,
        body=body,
    )
    case_services.case_event_record(
        case=agreement.case,
        actor=actor,
        kind="agreement_comment",
        data={"agreement": agreement.code, "comment": comment.pk, "term": term_key, "kind": kind},
    )
    case = agreement.case
    if author_role != "expert" and case.expert_id:
        # In-app only: the mediator sees it in the room or on the page; no text message per remark.
        notification_send(
            channel=Channel.IN_APP,
            kind="agreement_comment",
            body=_("[Cloud Bench] Case %(number)s: a party commented on the draft agreement.")
            % {"number": case.tracking_number},
            dedupe_key=f"agreement-comment:{comment.pk}",
            user=case.expert,
            link=_link(case),
            case_ref=case.tracking_number,
        )
    return comment


@transaction.atomic
def agreement_submit(*, agreement: Agreement, actor: User) -> Agreement:
    """The mediator submits the latest version as the final text; every signer is asked to sign."""
    agreement = _lock_agreement(agreement)
    case = agreement.case
    _require_expert(case, actor)
    if agreement.state != Agreement.State.DRAFT:
        raise TransitionNotAllowed(_("Only a draft can be submitted for signature."))
    version = latest_version(agreement)
    agreement.state = Agreement.State.SIGNING
    agreement.final_version = version
    agreement.submitted_at = timezone.now()
    agreement.save(update_fields=["state", "final_version", "submitted_at", "updated_at"])
    case_services.case_event_record(
        case=case,
        actor=actor,
        kind="agreement_submitted",
        data={"agreement": agreement.code, "version": version.number},
    )
    for signer in required_signers(case):
        phone = signer.party.phone if signer.party else (signer.user.phone or "")
        notify_person(
            kind="agreement_to_sign",
            body=_("[Cloud Bench] The agreement of case %(number)s is ready to sign:")
            % {"number": case.tracking_number},
            dedupe_key=f"agreement-sign:{agreement.pk}:v{version.number}:{signer.role}",
            user=signer.user,
            phone=phone,
            link=_link(case, "sign/"),
            case_ref=case.tracking_number,
        )
    return agreement


# --- signing ------------------------------------------------------------------------------------


def _code_hash(salt: str, code: str) -> str:
    return hmac.new(
        settings.SECRET_KEY.encode(), f"{salt}:{code}".encode(), hashlib.sha256
    ).hexdigest()


def _signer_for(case: Case, actor: User) -> Signer:
    for signer in required_signers(case):
        if signer.user is not None and signer.user.pk == actor.pk:
            return signer
    raise NotPermitted(_("Only the parties and the mediator of this case can sign it."))


def _require_signing(agreement: Agreement, version_number: int | None = None) -> None:
    if agreement.state == Agreement.State.LOCKED:
        raise CaseError(_("This agreement is already signed and locked."), code="locked")
    if agreement.state != Agreement.State.SIGNING or agreement.final_version is None:
        raise CaseError(_("The agreement has not been submitted for signature."), code="not_final")
    if version_number is not None and version_number != agreement.final_version.number:
        raise CaseError(
            _("This version has been replaced by a newer one; read the new text and sign that."),
            code="superseded",
        )


@transaction.atomic
def signing_code_send(*, agreement: Agreement, actor: User) -> SigningChallenge:
    """Text a fresh 6-digit code to the signer's own number, valid 5 minutes for the final text.
    The SMS body is wiped from the delivery log once sent (kind "signing_code")."""
    agreement = Agreement.objects.select_related("case", "final_version").get(pk=agreement.pk)
    signer = _signer_for(agreement.case, actor)
    _require_signing(agreement)
    if agreement.signatures.filter(version=agreement.final_version, signer=actor).exists():
        raise CaseError(_("You have already signed this agreement."), code="already_signed")
    phone = actor.phone or (signer.party.phone if signer.party else "")
    if not phone:
        raise CaseError(_("Add a mobile number to your account to sign."), code="no_phone")
    if not allow(f"signing-code:{actor.pk}", limit=SIGNING_CODES_PER_10_MIN, period=600):
        raise CaseError(_("Too many codes requested; try again in a few minutes."), code="rate")
    code = f"{secrets.randbelow(10**6):06d}"
    salt = secrets.token_hex(8)
    challenge = SigningChallenge.objects.create(
        agreement=agreement,
        version=agreement.final_version,
        user=actor,
        salt=salt,
        code_hash=_code_hash(salt, code),
        expires_at=timezone.now() + SIGNING_CODE_TTL,
    )
    notification_send(
        channel=Channel.SMS,
        kind="signing_code",
        body=_(
            "[Cloud Bench] Your code to sign the agreement of case %(number)s is %(code)s. "
            "Valid for 5 minutes. Do not share it."
        )
        % {"number": agreement.case.tracking_number, "code": code},
        dedupe_key=f"signing-code:{challenge.pk}",
        user=actor,
        phone=phone,
        case_ref=agreement.case.tracking_number,
    )
    return challenge


def parse_signature_image(data_url: str) -> bytes:
    """A drawn signature: a PNG data URL from the canvas, at most 200 kB, really a PNG."""
    prefix = "data:image/png;base64,"
    if not data_url.startswith(prefix):
        raise CaseError(_("The drawn signature must be a PNG image."), code="bad_signature")
    encoded = data_url[len(prefix) :]
    if len(encoded) > MAX_SIGNATURE_BYTES * 4 // 3 + 4:
        raise CaseError(_("The drawn signature is too large."), code="bad_signature")
    try:
        raw = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise CaseError(_("The drawn signature could not be read."), code="bad_signature") from exc
    if len(raw) > MAX_SIGNATURE_BYTES or not raw.startswith(b"\x89PNG\r\n\x1a\n"):
        raise CaseError(_("The drawn signature must be a PNG image."), code="bad_signature")
    try:
        with Image.open(io.BytesIO(raw)) as image:
            image.verify()
            width, height = image.size
            if image.format != "PNG":
                raise CaseError(_("The drawn signature must be a PNG image."), code="bad_signature")
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise CaseError(_("The drawn signature could not be read."), code="bad_signature") from exc
    if not (10 <= width <= MAX_SIGNATURE_SIDE and 10 <= height <= MAX_SIGNATURE_SIDE):
        raise CaseError(_("The drawn signature has an odd size."), code="bad_signature")
    return raw


def _clean_ip(ip: str | None) -> str | None:
    try:
        return str(ipaddress.ip_address((ip or "").strip()))
    except ValueError:
        return None


def agreement_sign(
    *,
    agreement: Agreement,
    actor: User,
    version_number: int,
    code: str,
    signature_data_url: str = "",
    typed_name: str = "",
    ip: str | None = None,
    user_agent: str = "",
) -> AgreementSignature:
    """A party or the mediator signs the final text with the SMS code just sent to them.

    Locks the agreement row, so concurrent signers are serialised; the signer who completes the
    set locks the agreement, chains it into the ledger and moves the case to "agreed" (exactly
    once). A wrong code counts as an attempt even though the call raises."""
    image = b""
    typed_name = (typed_name or "").strip()
    if signature_data_url:
        image = parse_signature_image(signature_data_url)
        method = AgreementSignature.Method.DRAWN
    elif typed_name:
        if len(typed_name) > 40:
            raise CaseError(_("The typed name is too long."), code="bad_signature")
        method = AgreementSignature.Method.TYPED
    else:
        raise CaseError(_("Draw your signature or type your name."), code="bad_signature")
    code = (code or "").strip()

    failure: CaseError | None = None
    with transaction.atomic():
        agreement = _lock_agreement(agreement)
        case = agreement.case
        signer = _signer_for(case, actor)
        _require_signing(agreement, version_number)
        version = agreement.final_version
        if agreement.signatures.filter(version=version, signer=actor).exists():
            raise CaseError(_("You have already signed this agreement."), code="already_signed")
        challenge = (
            SigningChallenge.objects.select_for_update()
            .filter(agreement=agreement, version=version, user=actor, used_at__isnull=True)
            .order_by("-created_at", "-pk")
            .first()
        )
        now = timezone.now()
        if challenge is None:
            raise CaseError(_("Ask for a code first."), code="no_code")
        if challenge.expires_at <= now:
            raise CaseError(_("The code has expired; ask for a new one."), code="code_expired")
        if challenge.attempts >= SIGNING_CODE_MAX_ATTEMPTS:
            raise CaseError(_("Too many wrong codes; ask for a new one."), code="too_many_attempts")
        if not (
            code.isdigit()
            and hmac.compare_digest(challenge.code_hash, _code_hash(challenge.salt, code))
        ):
            challenge.attempts += 1
            challenge.save(update_fields=["attempts", "updated_at"])
            # Commit the counted attempt; raise after the block.
            failure = CaseError(_("The code is not right."), code="bad_code")
        else:
            challenge.used_at = now
            challenge.save(update_fields=["used_at", "updated_at"])
            address, salt = _clean_ip(ip), secrets.token_hex(16)
            signature = AgreementSignature.objects.create(
                agreement=agreement,
                version=version,
                signer=actor,
                role=signer.role,
                party=signer.party,
                name=signer.name,
                method=method,
                typed_name=typed_name if method == AgreementSignature.Method.TYPED else "",
                image=image,
                image_sha256=hashlib.sha256(image).hexdigest() if image else "",
                signed_at=now,
                ip_digest=SignatureAddress.digest_of(salt, address) if address else "",
                user_agent=(user_agent or "")[:300],
                challenge=challenge,
            )
            if address:
                SignatureAddress.objects.create(signature=signature, ip=address, salt=salt)
            case_services.case_event_record(
                case=case,
                actor=actor,
                kind="agreement_signed",
                data={"agreement": agreement.code, "version": version.number, "role": signer.role},
            )
            signed = set(
                agreement.signatures.filter(version=version).values_list("signer_id", flat=True)
            )
            signers = required_signers(case)
            if all(s.user is not None and s.user.pk in signed for s in signers):
                _lock(agreement)
    if failure is not None:
        raise failure
    return signature


def _ledger_head() -> LedgerHead:
    try:
        with transaction.atomic():
            LedgerHead.objects.get_or_create(pk=1)
    except IntegrityError:
        pass  # created by a concurrent lock
    return LedgerHead.objects.select_for_update().get(pk=1)


def _lock(agreement: Agreement) -> None:
    """Lock (call with the agreement row locked): chain into the ledger, move the case to agreed,
    create the follow-ups, render the PDF after commit."""
    if agreement.locked_at is not None:
        return
    head = _ledger_head()
    agreement.state = Agreement.State.LOCKED
    agreement.locked_at = timezone.now()
    agreement.seq = head.seq + 1
    agreement.prev_hash = head.hash or ledger.GENESIS
    agreement.hash = ledger.compute_hash(agreement)
    agreement.save(update_fields=["state", "locked_at", "seq", "prev_hash", "hash", "updated_at"])
    head.seq = agreement.seq
    head.hash = agreement.hash
    head.save(update_fields=["seq", "hash"])
    case = agreement.case
    case_services.case_event_record(
        case=case,
        actor=None,
        kind="agreement_locked",
        data={"agreement": agreement.code, "seq": agreement.seq, "hash": agreement.hash},
    )
    _conclude_case(case, agreed=True, note=_("Agreement signed by every party."))
    _follow_ups_create(agreement)
    for signer in required_signers(case):
        notify_person(
            kind="agreement_locked",
            body=_(
                "[Cloud Bench] The agreement of case %(number)s is signed by everyone. "
                "Verification code %(code)s. See it here:"
            )
            % {"number": case.tracking_number, "code": agreement.code},
            dedupe_key=f"agreement-locked:{agreement.pk}:{signer.role}",
            user=signer.user,
            phone=signer.party.phone if signer.party else "",
            link=_link(case),
            case_ref=case.tracking_number,
        )
    from .tasks import agreement_render_pdf

    agreement_id = agreement.pk
    transaction.on_commit(lambda: agreement_render_pdf.delay(agreement_id))


def _conclude_case(case: Case, *, agreed: bool, note: str) -> None:
    case = Case.objects.select_for_update().get(pk=case.pk)
    if case.status in (Status.SCHEDULED, Status.IN_SESSION):
        hearing = open_hearing(case)
        if hearing is not None:
            case_services.session_conclude(hearing=hearing, actor=None, agreed=agreed, note=note)
            return
    target = Status.AGREED if agreed else Status.NOT_AGREED
    if case.status == target:
        return
    case_services._transition(case=case, to_status=target, actor=None, note=note)


@transaction.atomic
def agreement_refuse(
    *,
    agreement: Agreement,
    actor: User,
    reason: str,
    referral: str,
    referral_note: str = "",
) -> Agreement:
    """A party refuses to sign, with a reason: the outcome is "not agreed" and the case records
    where the dispute is referred (arbitration, litigation or another department)."""
    agreement = _lock_agreement(agreement)
    case = agreement.case
    signer = _signer_for(case, actor)
    if signer.role == "expert":
        raise NotPermitted(_("Only a party can refuse to sign."))
    _require_open(agreement)
    reason = (reason or "").strip()
    if not reason:
        raise CaseError(_("Say why you do not sign."), code="empty")
    referrals = [r for r in Agreement.Referral.values if r]
    if referral not in referrals:
        raise CaseError(_("Choose where the dispute goes next."), code="bad_referral")
    agreement.state = Agreement.State.REFUSED
    agreement.refused_by = actor
    agreement.refusal_reason = reason[:500]
    agreement.referral = referral
    agreement.referral_note = (referral_note or "").strip()[:200]
    agreement.save(
        update_fields=[
            "state",
            "refused_by",
            "refusal_reason",
            "referral",
            "referral_note",
            "updated_at",
        ]
    )
    label = str(Agreement.Referral(referral).label)
    case_services.case_event_record(
        case=case,
        actor=actor,
        kind="agreement_refused",
        note=reason,
        data={"agreement": agreement.code, "role": signer.role},
    )
    _conclude_case(case, agreed=False, note=_("A party refused to sign the agreement."))
    case = Case.objects.get(pk=case.pk)
    case.outcome_note = f"{_('Referred to')}: {label} {agreement.referral_note}".strip()[:500]
    case.save(update_fields=["outcome_note", "updated_at"])
    case_services.case_event_record(
        case=case,
        actor=actor,
        kind="referred",
        note=agreement.referral_note,
        data={"referral": referral},
        public=True,
    )
    return agreement


# --- PDF --------------------------------------------------------------------------------------------


def agreement_pdf_render(*, agreement_id: int) -> str:
    """Render and attach the PDF of a locked agreement. Idempotent: a PDF already attached stays."""
    from django.core.files.base import ContentFile

    from .pdf import render_pdf

    agreement = Agreement.objects.select_related("case", "final_version").get(pk=agreement_id)
    if not agreement.is_locked:
        return "not_locked"
    if agreement.pdf:
        return "exists"
    data = render_pdf(agreement)
    name = agreement.pdf.storage.save(
        f"agreements/{agreement.case.tracking_number}-{agreement.code}.pdf", ContentFile(data)
    )
    with transaction.atomic():
        fresh = Agreement.objects.select_for_update().get(pk=agreement_id)
        if fresh.pdf:
            agreement.pdf.storage.delete(name)
            return "exists"
        fresh.pdf.name = name
        fresh.save(update_fields=["pdf", "updated_at"])
    return "rendered"


def judicial_bundle_export(*, agreement: Agreement, actor: User) -> bytes:
    """A coordinator of the case exports the judicial-confirmation bundle of a locked agreement
    (ZIP bytes). Renders the PDF first if the task has not yet done so."""
    from .bundle import build_zip

    agreement = Agreement.objects.select_related("case", "final_version").get(pk=agreement.pk)
    if "coordinator" not in case_roles_for_user(agreement.case, actor):
        raise NotPermitted(_("Only the case's coordinators can export this bundle."))
    if not agreement.is_locked:
        raise CaseError(
            _("Only a signed agreement can be sent for confirmation."), code="not_locked"
        )
    if not agreement.pdf:
        agreement_pdf_render(agreement_id=agreement.pk)
        agreement.refresh_from_db()
    with agreement.pdf.open("rb") as f:
        pdf_bytes = f.read()
    data = build_zip(agreement, pdf_bytes)
    with transaction.atomic():
        case_services.case_event_record(
            case=agreement.case,
            actor=actor,
            kind="judicial_bundle_exported",
            data={"agreement": agreement.code},
        )
    return data


# --- follow-up (履行与回访) ---------------------------------------------------------------------------


def _due_at(due: str) -> datetime:
    """The end of the due day in local time: a term due on the 31st is checked from the 1st."""
    day = datetime.fromisoformat(due).date() + timedelta(days=1)
    return timezone.make_aware(datetime.combine(day, time.min), timezone.get_default_timezone())


def _follow_ups_create(agreement: Agreement) -> None:
    content = agreement.final_version.content
    for term in content.get("terms", []):
        if not term.get("due_date"):
            continue
        FollowUp.objects.get_or_create(
            agreement=agreement,
            term_key=term["key"],
            defaults={
                "term_text": doc.term_sentence(content, term)[:500],
                "due_date": term["due_date"],
                "due_at": _due_at(term["due_date"]),
            },
        )


def follow_ups_process_due(*, now: datetime | None = None) -> dict[str, int]:
    """Ask the parties about every term that has come due, and flag terms nobody answered within
    three days. Idempotent and safe to run concurrently: each follow-up moves on under its own
    row lock, and each message has a dedupe key."""
    now = now or timezone.now()
    asked = escalated = 0
    due = FollowUp.objects.filter(state=FollowUp.State.PENDING, due_at__lte=now)
    for pk in list(due.values_list("pk", flat=True)[:500]):
        with transaction.atomic():
            follow_up = (
                FollowUp.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(pk=pk, state=FollowUp.State.PENDING)
                .select_related("agreement__case")
                .first()
            )
            if follow_up is None:
                continue
            follow_up.state = FollowUp.State.ASKED
            follow_up.asked_at = now
            follow_up.save(update_fields=["state", "asked_at", "updated_at"])
            _ask_parties(follow_up)
            asked += 1
    silent = FollowUp.objects.filter(
        state=FollowUp.State.ASKED, asked_at__lte=now - FOLLOW_UP_ANSWER_WINDOW
    )
    for pk in list(silent.values_list("pk", flat=True)[:500]):
        with transaction.atomic():
            follow_up = (
                FollowUp.objects.select_for_update(skip_locked=True, of=("self",))
                .filter(pk=pk, state=FollowUp.State.ASKED)
                .select_related("agreement__case")
                .first()
            )
            if follow_up is None:
                continue
            _resolve(follow_up, FollowUp.State.UNANSWERED, actor=None)
            escalated += 1
    return {"asked": asked, "escalated": escalated}


def _ask_parties(follow_up: FollowUp) -> None:
    case = follow_up.agreement.case
    for party in case.parties.select_related("user"):
        notify_person(
            kind="follow_up_ask",
            body=_(
                "[Cloud Bench] Case %(number)s: was this term of the agreement fulfilled? %(term)s"
            )
            % {"number": case.tracking_number, "term": follow_up.term_text[:120]},
            dedupe_key=f"follow-up-ask:{follow_up.pk}:{party.pk}",
            user=party.user,
            phone=party.phone,
            link=_link(case, f"follow-up/{follow_up.pk}/"),
            case_ref=case.tracking_number,
        )
    case_services.case_event_record(
        case=case,
        actor=None,
        kind="follow_up_asked",
        data={"follow_up": follow_up.pk, "term": follow_up.term_key},
    )


@transaction.atomic
def follow_up_answer(
    *, follow_up: FollowUp, actor: User, fulfilled: bool, note: str = ""
) -> FollowUp:
    """A party says whether a term was fulfilled (also before it is due). One "no" marks the term
    unfulfilled (the coordinator is alerted and supervision opened); "yes" from every party marks
    it fulfilled; when every term is fulfilled the case is followed up and closed."""
    follow_up = (
        FollowUp.objects.select_for_update(of=("self",))
        .select_related("agreement__case")
        .get(pk=follow_up.pk)
    )
    case = follow_up.agreement.case
    party = case.parties.filter(user=actor).first() if actor.is_authenticated else None
    if party is None:
        raise NotPermitted(_("Only a party of the case can answer."))
    if follow_up.state not in (FollowUp.State.PENDING, FollowUp.State.ASKED):
        raise CaseError(_("This term has already been checked."), code="resolved")
    FollowUpAnswer.objects.update_or_create(
        follow_up=follow_up,
        party=party,
        defaults={"fulfilled": fulfilled, "note": (note or "").strip()[:500]},
    )
    case_services.case_event_record(
        case=case,
        actor=actor,
        kind="follow_up_answered",
        data={"follow_up": follow_up.pk, "fulfilled": fulfilled, "role": party.role},
    )
    if not fulfilled:
        _resolve(follow_up, FollowUp.State.UNFULFILLED, actor=actor)
    else:
        answered_yes = set(
            follow_up.answers.filter(fulfilled=True).values_list("party_id", flat=True)
        )
        if all(p.pk in answered_yes for p in case.parties.all()):
            _resolve(follow_up, FollowUp.State.FULFILLED, actor=actor)
    return follow_up


def _resolve(follow_up: FollowUp, state: str, *, actor: User | None) -> None:
    """Settle one follow-up (row locked by the caller) and react to the outcome."""
    follow_up.state = state
    follow_up.resolved_at = timezone.now()
    follow_up.save(update_fields=["state", "resolved_at", "updated_at"])
    agreement = follow_up.agreement
    case = agreement.case
    if state == FollowUp.State.FULFILLED:
        remaining = agreement.follow_ups.exclude(state=FollowUp.State.FULFILLED).exists()
        if not remaining:
            case = Case.objects.select_for_update().get(pk=case.pk)
            if case.status in (Status.AGREED, Status.NOT_AGREED):
                note = _("Every term of the agreement was fulfilled.")
                case_services.case_follow_up(case=case, actor=None, note=note)
                case_services.case_close(case=case, actor=None, note=note)
        return
    reason = (
        _("Term not fulfilled: %(term)s")
        if state == FollowUp.State.UNFULFILLED
        else _("No answer about the term: %(term)s")
    ) % {"term": follow_up.term_text[:200]}
    for coordinator in coordinators_for_case(case):
        notify_person(
            kind="follow_up_unfulfilled",
            body=_("[Cloud Bench] Case %(number)s: %(reason)s")
            % {"number": case.tracking_number, "reason": reason},
            dedupe_key=f"follow-up-alert:{follow_up.pk}:{coordinator.pk}",
            user=coordinator,
            link=f"{settings.SITE_URL}/cases/{case.tracking_number}/",
            case_ref=case.tracking_number,
        )
    open_supervision(case, reason)


__all__ = [
    "judicial_bundle_export",
    "agreement_comment",
    "agreement_pdf_render",
    "agreement_refuse",
    "agreement_save_draft",
    "agreement_sign",
    "agreement_start",
    "agreement_submit",
    "follow_up_answer",
    "follow_ups_process_due",
    "signing_code_send",
]
