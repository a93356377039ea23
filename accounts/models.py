from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from .phones import validate_mobile


class TimeStamped(models.Model):
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class Role(models.TextChoices):
    PARTY = "party", _("Party")
    EXPERT = "expert", _("Expert")
    COORDINATOR = "coordinator", _("Coordinator")
    MODERATOR = "moderator", _("Moderator")


class User(AbstractUser):
    """A person on the platform. Residents sign in with a mobile number and an SMS code."""

    phone = models.CharField(
        _("mobile number"),
        max_length=20,
        unique=True,
        null=True,
        blank=True,
        validators=[validate_mobile],
        help_text=_("E.164, e.g. +8613800138000"),
    )
    phone_verified = models.BooleanField(default=False)
    display_name = models.CharField(_("display name"), max_length=40, blank=True)

    def __str__(self) -> str:
        return self.display_name or self.username

    @property
    def nickname(self) -> str:
        """What other people may see: the display name, never the number."""
        return self.display_name or _("Resident %(id)s") % {"id": self.pk}

    def has_role(self, role: str) -> bool:
        return self.groups.filter(name=role).exists()


def user_display(user: User) -> str:
    """How allauth names a person in its messages: never the internal username or the number."""
    return str(user.nickname)


class Street(TimeStamped):
    """A street office (街道), the level above communities."""

    name = models.CharField(max_length=60)
    district = models.CharField(max_length=60)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["district", "name"], name="uniq_street")]
        ordering = ["district", "name"]

    def __str__(self) -> str:
        return f"{self.district}{self.name}"


class Community(TimeStamped):
    """A residential community (社区)."""

    name = models.CharField(max_length=60)
    street = models.ForeignKey(Street, on_delete=models.PROTECT, related_name="communities")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["street", "name"], name="uniq_community")]
        ordering = ["street__name", "name"]
        verbose_name_plural = "communities"

    def __str__(self) -> str:
        return f"{self.street.name} {self.name}"

    @property
    def district(self) -> str:
        return self.street.district


class Membership(TimeStamped):
    """A resident verified as living in a community (used for voting and the bench panel)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="memberships")
    household = models.CharField(
        _("household"), max_length=60, blank=True, help_text=_("Building-unit-room, e.g. 3-2-501")
    )
    verified_at = models.DateTimeField(null=True, blank=True)
    verified_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "community"], name="uniq_membership")
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.community}"

    @property
    def is_verified(self) -> bool:
        return self.verified_at is not None


class CoordinatorPost(TimeStamped):
    """A coordinator's responsibility: a whole street, or one community within it."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="posts"
    )
    street = models.ForeignKey(Street, on_delete=models.CASCADE, related_name="posts")
    community = models.ForeignKey(
        Community, null=True, blank=True, on_delete=models.CASCADE, related_name="posts"
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "street"],
                condition=Q(community__isnull=True),
                name="uniq_street_post",
            ),
            models.UniqueConstraint(
                fields=["user", "community"],
                condition=Q(community__isnull=False),
                name="uniq_community_post",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} @ {self.community or self.street}"

    @property
    def is_street_level(self) -> bool:
        return self.community_id is None


class Channel(models.TextChoices):
    SMS = "sms", _("SMS")
    EMAIL = "email", _("Email")
    IN_APP = "in_app", _("In-app")


class Notification(TimeStamped):
    """One message to one person over one channel, and its delivery log.

    `dedupe_key` makes sending idempotent: asking twice for the same message creates one row, and
    the delivery task sends a row at most once.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", _("Queued")
        SENT = "sent", _("Sent")
        FAILED = "failed", _("Failed")

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="notifications",
    )
    phone = models.CharField(max_length=20, blank=True)
    email = models.EmailField(blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    kind = models.CharField(max_length=40)
    subject = models.CharField(max_length=120, blank=True)
    body = models.TextField(max_length=1000)
    link = models.CharField(max_length=300, blank=True)
    case_ref = models.CharField(max_length=20, blank=True, db_index=True)
    dedupe_key = models.CharField(max_length=200, unique=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    attempts = models.PositiveSmallIntegerField(default=0)
    last_error = models.CharField(max_length=300, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    read_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["user", "channel", "read_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=["queued", "sent", "failed"]),
                name="notification_status_valid",
            )
        ]

    def __str__(self) -> str:
        return f"{self.channel}:{self.kind}:{self.status}"


class SmsOutboxMessage(TimeStamped):
    """What the console SMS backend 'sent'. Read by the dev-only outbox page; never in production."""

    phone = models.CharField(max_length=20, db_index=True)
    body = models.TextField()

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"sms {self.pk}"
