"""What the mediation room keeps: evidence shown to the room, and recordings of hearings.

Both live under ``MEDIA_ROOT/private/`` with unguessable names, sealed (encrypted, see
``privacy.sealed``), and are served only through views that check the viewer's role in the case (nginx publishes ``/media/hls/`` only).
"""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from mediation_room.models import Case, Hearing
from privacy.storage import sealed_storage


class TimeStamped(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


def evidence_path(instance: Evidence, filename: str) -> str:
    suffix = {
        "image/jpeg": "jpg",
        "image/png": "png",
        "image/webp": "webp",
        "application/pdf": "pdf",
    }
    return f"private/evidence/{instance.case_id}/{uuid.uuid4().hex}.{suffix.get(instance.content_type, 'bin')}"


class Evidence(TimeStamped):
    """A photo or PDF a member showed to the room. Kept with the case; never on air."""

    class ContentType(models.TextChoices):
        JPEG = "image/jpeg", "JPEG"
        PNG = "image/png", "PNG"
        WEBP = "image/webp", "WebP"
        PDF = "application/pdf", "PDF"

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="evidence")
    hearing = models.ForeignKey(
        Hearing, on_delete=models.SET_NULL, null=True, related_name="evidence"
    )
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    uploader_role = models.CharField(max_length=12)
    title = models.CharField(_("title"), max_length=100)
    file = models.FileField(upload_to=evidence_path, max_length=200, storage=sealed_storage)
    content_type = models.CharField(max_length=40, choices=ContentType.choices)
    size = models.PositiveIntegerField()
    sha256 = models.CharField(max_length=64)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"{self.case_id} {self.title}"


class Recording(TimeStamped):
    """The recording of a hearing's room (composite picture, mixed audio), made with every
    party's consent; its SHA-256 lets anyone holding the file check it is the one kept here."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    hearing = models.ForeignKey(Hearing, on_delete=models.CASCADE, related_name="recordings")
    file = models.FileField(max_length=300, storage=sealed_storage)
    sha256 = models.CharField(max_length=64)
    duration = models.FloatField(help_text=_("seconds"))
    size = models.PositiveBigIntegerField()
    started_at = models.DateTimeField()

    class Meta:
        ordering = ["started_at", "pk"]

    def __str__(self) -> str:
        return f"{self.hearing_id} {self.started_at:%Y-%m-%d %H:%M}"
