"""A person's own data (个人信息保护法 第四十五条): everything the platform holds about them, as
a ZIP of JSON and their files, decrypted.

What is theirs: their account and community memberships; for each case they are a party of,
what the case page shows them (the case, their own party record, the other parties by role
only), their consents and consent receipts, the events they acted in; their live comments, poll
votes, ratings; the signatures they made (with the image and the address they signed from);
the messages sent to them; the evidence they showed and the signed agreements of their cases
(files, decrypted); and the list of the recordings of their hearings (each is downloaded from
the room page: a recording also holds the other party's face and voice). Nothing of the other
party beyond what the case shows them: not their number, not their evidence, comments or
signatures.

The ZIP is streamed: files are decrypted a chunk at a time into the archive as it is sent.
"""

from __future__ import annotations

import json
import zipfile
from collections.abc import Iterator
from datetime import date, datetime
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from accounts.models import Membership, Notification, User
from mediation_room.agreements.models import Agreement, AgreementSignature
from mediation_room.models import Case, CaseEvent, Consent, Party
from streaming.models import Evidence, Recording
from voting.models import Comment, MediationRating, PollVote

from .models import AccessLog, ConsentReceipt
from .sealed import SealedReader


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)


def _account(user: User) -> dict[str, Any]:
    return {
        "username": user.username,
        "display_name": user.display_name,
        "phone": user.phone,
        "email": user.email,
        "date_joined": user.date_joined,
        "last_login": user.last_login,
        "memberships": [
            {
                "community": m.community.name,
                "household": m.household,
                "verified_at": m.verified_at,
                "requested_at": m.created_at,
            }
            for m in Membership.objects.filter(user=user).select_related("community")
        ],
    }


def _case(case: Case, me: Party) -> dict[str, Any]:
    return {
        "tracking_number": case.tracking_number,
        "category": case.category,
        "status": case.status,
        "registered_at": case.created_at,
        "description": case.description if case.reporter_id == me.user_id else None,
        "community": case.community.name,
        "my_role": me.role,
        "my_party_record": {
            "name": me.name,
            "phone": me.phone,
            "show_face": me.show_face,
        },
        "other_parties": [
            {"role": p.role} for p in case.parties.exclude(pk=me.pk).order_by("role")
        ],
        "consents": [
            {"kind": c.kind, "granted": c.granted, "decided_at": c.decided_at}
            for c in Consent.objects.filter(party=me).order_by("kind")
        ],
        "consent_receipts": [
            consent_receipt_document(r) for r in ConsentReceipt.objects.filter(party=me)
        ],
        "my_events": [
            {"kind": e.kind, "at": e.created_at, "from": e.from_status, "to": e.to_status}
            for e in CaseEvent.objects.filter(case=case, actor_id=me.user_id)
        ],
        "recordings": [
            {
                "id": str(r.public_id),
                "started_at": r.started_at,
                "duration_seconds": r.duration,
                "sha256": r.sha256,
            }
            for r in Recording.objects.filter(hearing__case=case)
        ],
    }


def consent_receipt_document(receipt: ConsentReceipt) -> dict[str, Any]:
    return {
        "case": receipt.party.case.tracking_number,
        "role": receipt.party.role,
        "kind": receipt.kind,
        "granted": receipt.granted,
        "at": receipt.at,
        "text": receipt.text,
        "text_version": receipt.text_version,
    }


def _signature(sig: AgreementSignature) -> dict[str, Any]:
    address = getattr(sig, "address", None)
    return {
        "agreement": sig.agreement.code,
        "case": sig.agreement.case.tracking_number,
        "role": sig.role,
        "name": sig.name,
        "method": sig.method,
        "typed_name": sig.typed_name,
        "signed_at": sig.signed_at,
        "ip": (address.ip if address else None) or sig.ip,
        "user_agent": sig.user_agent,
        "image": f"signatures/{sig.agreement.code}-{sig.role}.png" if sig.image else None,
    }


def personal_data(user: User) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The JSON document and the sealed files to add: (name in the ZIP, path on disk)."""
    parties = list(Party.objects.filter(user=user).select_related("case__community"))
    signatures = list(
        AgreementSignature.objects.filter(signer=user).select_related("agreement__case", "address")
    )
    evidence = list(Evidence.objects.filter(uploaded_by=user).select_related("case"))
    document = {
        "exported_at": timezone.now(),
        "account": _account(user),
        "cases": [_case(p.case, p) for p in parties],
        "signatures": [_signature(s) for s in signatures],
        "evidence": [
            {
                "case": e.case.tracking_number,
                "title": e.title,
                "content_type": e.content_type,
                "size": e.size,
                "sha256": e.sha256,
                "shown_at": e.created_at,
                "file": f"evidence/{e.public_id}.{e.file.name.rsplit('.', 1)[-1]}",
            }
            for e in evidence
        ],
        "live_comments": [
            {"at": c.created_at, "nickname": c.nickname, "text": c.text, "state": c.state}
            for c in Comment.objects.filter(author=user)
        ],
        "poll_votes": [
            {"poll": v.poll.question, "option": v.option.text}
            for v in PollVote.objects.filter(user=user).select_related("poll", "option")
        ],
        "ratings": [
            {"case": r.case.tracking_number, "score": r.score, "comment": r.comment}
            for r in MediationRating.objects.filter(party__user=user).select_related("case")
        ],
        "messages": [
            {
                "at": n.created_at,
                "channel": n.channel,
                "kind": n.kind,
                "to": n.phone or n.email,
                "text": n.body,
            }
            for n in Notification.objects.filter(user=user).order_by("created_at")
        ],
        "my_openings_of_case_files": [
            {"at": a.at, "case": a.case.tracking_number, "kind": a.kind, "ip": a.ip}
            for a in AccessLog.objects.filter(actor=user).select_related("case")
        ],
    }
    files = [
        (
            f"evidence/{e.public_id}.{e.file.name.rsplit('.', 1)[-1]}",
            str(Path(settings.MEDIA_ROOT) / e.file.name),
        )
        for e in evidence
    ]
    agreements = Agreement.objects.filter(
        case__in=[p.case_id for p in parties], locked_at__isnull=False
    ).exclude(pdf="")
    for agreement in agreements.select_related("case"):
        files.append(
            (
                f"agreements/{agreement.case.tracking_number}-{agreement.code}.pdf",
                agreement.pdf.path,
            )
        )
    return document, files


class _Pipe:
    """What zipfile writes into; drained after each step so little is held at a time."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._parts.append(bytes(data))
        return len(data)

    def flush(self) -> None:
        pass

    def drain(self) -> bytes:
        data = b"".join(self._parts)
        self._parts.clear()
        return data


def export_zip(user: User) -> Iterator[bytes]:
    """The ZIP as a stream of byte strings."""
    document, files = personal_data(user)
    signatures = AgreementSignature.objects.filter(signer=user).exclude(image=b"")
    pipe = _Pipe()
    with zipfile.ZipFile(pipe, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        text = json.dumps(document, ensure_ascii=False, indent=2, default=_json_default)
        archive.writestr("personal-data.json", text)
        yield pipe.drain()
        for sig in signatures.select_related("agreement"):
            archive.writestr(f"signatures/{sig.agreement.code}-{sig.role}.png", bytes(sig.image))
        yield pipe.drain()
        for name, path in files:
            try:
                reader = SealedReader(path)
            except FileNotFoundError:
                continue
            with reader, archive.open(name, "w", force_zip64=True) as member:
                for block in reader.iter_range():
                    member.write(block)
                    yield pipe.drain()
    yield pipe.drain()
