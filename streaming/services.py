"""Writes of the mediation room: its audit events, evidence shown to the room, recordings.

Each public function is atomic, checks who may act, writes its CaseEvent in the same transaction
and tells the room only after commit.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.urls import reverse
from django.utils.translation import gettext as _

from accounts.models import User
from mediation_room.errors import NotPermitted
from mediation_room.models import CaseEvent, Hearing
from mediation_room.services import case_event_record

from .models import Evidence, Recording
from .plane import media_room_group, room_frame_message
from .selectors import RoomRefused, role_label, room_access_for_user

ROOM_EVENTS = frozenset(
    {
        "room_joined",
        "room_left",
        "room_member_admitted",
        "room_member_muted",
        "room_member_removed",
        "room_caucus_started",
        "room_caucus_ended",
        "room_share_started",
        "room_share_stopped",
        "room_share_on_air",
        "room_share_off_air",
    }
)
EVIDENCE_MAX_BYTES = 10 * 1024 * 1024
EVIDENCE_TITLE_MAX = 100


class ShareRefused(Exception):
    """A screen share the room's rules do not allow; ``code`` is the room protocol's."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def screen_share_start_check(*, sharing: str | None, member: str, in_media: bool) -> None:
    """One share at a time, from a member whose media is in the room (the node's state)."""
    if not in_media:
        raise ShareRefused("not_in_room", _("Join the room before sharing your screen."))
    if sharing is not None and sharing != member:
        raise ShareRefused("share_busy", _("Someone else is sharing their screen."))


def screen_share_air_check(
    *, sharing: str | None, on_air: bool, actor_role: str, caucus: bool
) -> None:
    """Only the mediator puts a share on the livestream; never during a private talk."""
    if actor_role != "expert":
        raise ShareRefused("forbidden", _("Only the mediator can do this."))
    if on_air and sharing is None:
        raise ShareRefused("share_none", _("Nobody is sharing their screen."))
    if on_air and caucus:
        raise ShareRefused("caucus", _("Not during a private talk."))


def _room_role(actor: User, public_id: str) -> tuple[Hearing, str]:
    try:
        access = room_access_for_user(actor, public_id)
    except RoomRefused as exc:
        raise NotPermitted(exc.message) from exc
    return Hearing.objects.select_related("case").get(pk=access.hearing_id), access.role


@transaction.atomic
def room_event_record(
    *, public_id: str, actor: User, kind: str, data: dict[str, Any] | None = None
) -> CaseEvent:
    """Record what happened in the room (join, leave, caucus, removal) as a CaseEvent.

    Only a member of the room may be its actor; ``data`` holds room member ids and roles, never
    names or phone numbers."""
    if kind not in ROOM_EVENTS:
        raise ValueError(f"not a room event: {kind}")
    hearing, role = _room_role(actor, public_id)
    return case_event_record(
        case=hearing.case,
        actor=actor,
        kind=kind,
        data={"hearing": hearing.public_id, "role": role, **(data or {})},
    )


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head.startswith(b"%PDF-"):
        return "application/pdf"
    return None


def _check_image(upload: UploadedFile) -> None:
    from PIL import Image, UnidentifiedImageError

    upload.seek(0)
    try:
        with Image.open(upload) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError) as exc:
        raise ValidationError(_("The picture could not be read."), code="bad_file") from exc
    finally:
        upload.seek(0)


@transaction.atomic
def evidence_upload(
    *, public_id: str, actor: User, upload: UploadedFile, title: str = ""
) -> Evidence:
    """A member shows a photo or PDF to the room. Stored with the case (never on air), recorded
    as a CaseEvent, and announced to the room's members after commit."""
    hearing, role = _room_role(actor, public_id)
    if upload.size is None or upload.size == 0:
        raise ValidationError(_("The file is empty."), code="empty")
    if upload.size > EVIDENCE_MAX_BYTES:
        raise ValidationError(
            _("The file is larger than %(mb)d MB.") % {"mb": EVIDENCE_MAX_BYTES // (1024 * 1024)},
            code="too_large",
        )
    upload.seek(0)
    content_type = _sniff(upload.read(16))
    upload.seek(0)
    if content_type is None:
        raise ValidationError(
            _("Only photos (JPEG, PNG, WebP) and PDF files can be shown."), code="bad_type"
        )
    if content_type.startswith("image/"):
        _check_image(upload)
    upload.seek(0)
    title = " ".join((title or upload.name or "").split())[:EVIDENCE_TITLE_MAX] or _("Evidence")
    evidence = Evidence(
        case=hearing.case,
        hearing=hearing,
        uploaded_by=actor,
        uploader_role=role,
        title=title,
        content_type=content_type,
        size=upload.size,
    )
    evidence.file.save("evidence", upload, save=False)
    # hashed as it was sealed, in the same pass over the upload
    evidence.sha256 = evidence.file.storage.sha256(evidence.file.name)
    evidence.save()
    case_event_record(
        case=hearing.case,
        actor=actor,
        kind="evidence_shown",
        data={"hearing": hearing.public_id, "evidence": str(evidence.public_id), "role": role},
    )
    frame = evidence_frame(evidence)
    transaction.on_commit(lambda: _tell_room(hearing.public_id, frame))
    return evidence


def evidence_frame(evidence: Evidence) -> dict[str, Any]:
    return {
        "type": "evidence",
        "id": str(evidence.public_id),
        "title": evidence.title,
        "content_type": evidence.content_type,
        "url": reverse(
            "streaming:evidence_file",
            kwargs={"public_id": evidence.hearing.public_id, "evidence_id": evidence.public_id},
        ),
        "role": evidence.uploader_role,
        "label": str(role_label(evidence.uploader_role)),
    }


def _tell_room(public_id: str, frame: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        async_to_sync(layer.group_send)(media_room_group(public_id), room_frame_message(frame))


@transaction.atomic
def recording_store(
    *,
    hearing_public_id: str,
    path: str,
    sha256: str,
    duration: float,
    size: int,
    started_at: datetime,
) -> Recording:
    """Attach a finished recording to its hearing (called by the media node, not a user)."""
    hearing = Hearing.objects.select_related("case").get(public_id=hearing_public_id)
    media_root = Path(settings.MEDIA_ROOT).resolve()
    relative = Path(path).resolve().relative_to(media_root)
    recording = Recording.objects.create(
        hearing=hearing,
        file=str(relative),
        sha256=sha256,
        duration=duration,
        size=size,
        started_at=started_at,
    )
    case_event_record(
        case=hearing.case,
        actor=None,
        kind="recording_saved",
        data={
            "hearing": hearing.public_id,
            "recording": str(recording.public_id),
            "sha256": sha256,
            "duration": round(duration, 1),
        },
    )
    return recording
