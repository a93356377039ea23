import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Community, TimeStamped
from accounts.phones import validate_mobile


class Category(models.TextChoices):
    UNPAID_WAGES = "unpaid_wages", _("Unpaid wages")
    NEIGHBOURS = "neighbours", _("Neighbours")
    PROPERTY = "property", _("Property management")
    FAMILY = "family", _("Marriage and family")
    CONSUMER = "consumer", _("Consumer")
    HOUSING_LAND = "housing_land", _("Housing and land")
    OTHER = "other", _("Other")


class Status(models.TextChoices):
    REGISTERED = "registered", _("Registered")
    DECLINED = "declined", _("Not accepted")
    ACCEPTED = "accepted", _("Accepted")
    MATCHED = "matched", _("Mediator assigned")
    SCHEDULED = "scheduled", _("Hearing scheduled")
    IN_SESSION = "in_session", _("In session")
    AGREED = "agreed", _("Agreement reached")
    NOT_AGREED = "not_agreed", _("No agreement")
    WITHDRAWN = "withdrawn", _("Withdrawn")
    FOLLOWED_UP = "followed_up", _("Followed up")
    CLOSED = "closed", _("Closed")


# Statuses from which the case has left active mediation.
CONCLUDED = {Status.AGREED, Status.NOT_AGREED, Status.WITHDRAWN}
TERMINAL = {Status.DECLINED, Status.CLOSED}


def new_public_token() -> str:
    return secrets.token_urlsafe(16)


class CaseNumber(models.Model):
    """Per-year counter behind tracking numbers (LP-2026-000123), incremented under a row lock."""

    year = models.PositiveSmallIntegerField(primary_key=True)
    last = models.PositiveIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.year}: {self.last}"


class Case(TimeStamped):
    tracking_number = models.CharField(_("tracking number"), max_length=20, unique=True)
    category = models.CharField(_("category"), max_length=20, choices=Category.choices)
    description = models.TextField(_("description"), max_length=4000)
    community = models.ForeignKey(Community, on_delete=models.PROTECT, related_name="cases")
    reporter = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reported_cases"
    )
    status = models.CharField(
        _("status"), max_length=20, choices=Status.choices, default=Status.REGISTERED, db_index=True
    )
    status_changed_at = models.DateTimeField()
    stage_deadline = models.DateTimeField(null=True, blank=True, db_index=True)
    preferred_times = models.CharField(_("preferred times"), max_length=300, blank=True)
    decline_reason = models.CharField(_("reason not accepted"), max_length=500, blank=True)
    expert = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="expert_cases",
        help_text=_("The mediator who accepted the case."),
    )
    outcome_note = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["community", "status"]),
            models.Index(fields=["status", "stage_deadline"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in Status]), name="case_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(category__in=[c.value for c in Category]), name="case_category_valid"
            ),
        ]

    def __str__(self) -> str:
        return self.tracking_number

    @property
    def is_overdue(self) -> bool:
        from django.utils import timezone

        return bool(self.stage_deadline and self.stage_deadline < timezone.now())


class PartyRole(models.TextChoices):
    APPLICANT = "applicant", _("Applicant")
    RESPONDENT = "respondent", _("Respondent")


class Party(TimeStamped):
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="parties")
    role = models.CharField(max_length=12, choices=PartyRole.choices)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="parties",
    )
    name = models.CharField(_("name"), max_length=40)
    phone = models.CharField(_("mobile number"), max_length=20, validators=[validate_mobile])
    invite_token = models.CharField(max_length=40, unique=True, default=new_public_token)
    show_face = models.BooleanField(
        _("show my face on the livestream"),
        default=False,
        help_text=_("Off by default: viewers see the face blurred."),
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["case", "phone"], name="uniq_party_phone_per_case"),
            models.UniqueConstraint(
                fields=["case"], condition=Q(role="applicant"), name="one_applicant_per_case"
            ),
        ]
        ordering = ["case", "role", "pk"]
        verbose_name_plural = "parties"

    def __str__(self) -> str:
        return f"{self.case.tracking_number} {self.get_role_display()}"


class ConsentKind(models.TextChoices):
    VIDEO = "video", _("Video mediation")
    LIVESTREAM = "livestream", _("Livestream to residents")
    RECORDING = "recording", _("Recording")


class Consent(TimeStamped):
    """A party's current answer for one kind of consent. Every change is also a CaseEvent."""

    party = models.ForeignKey(Party, on_delete=models.CASCADE, related_name="consents")
    kind = models.CharField(max_length=12, choices=ConsentKind.choices)
    granted = models.BooleanField()
    decided_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["party", "kind"], name="uniq_consent_per_kind")
        ]


class CaseEvent(models.Model):
    """Append-only audit trail: who did what to a case, when, and from which state to which."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="events")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("Empty when the platform itself acted."),
    )
    kind = models.CharField(max_length=40)
    from_status = models.CharField(max_length=20, blank=True, choices=Status.choices)
    to_status = models.CharField(max_length=20, blank=True, choices=Status.choices)
    note = models.CharField(max_length=500, blank=True)
    data = models.JSONField(default=dict, blank=True)
    public = models.BooleanField(
        default=False, help_text=_("Shown on the public lookup timeline (no personal data).")
    )
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["created_at", "pk"]
        indexes = [models.Index(fields=["case", "created_at"])]

    def __str__(self) -> str:
        return f"{self.case_id} {self.kind} {self.from_status}->{self.to_status}"


class Hearing(TimeStamped):
    """A scheduled mediation session of a case; its public id names the room."""

    class State(models.TextChoices):
        SCHEDULED = "scheduled", _("Scheduled")
        LIVE = "live", _("In progress")
        ENDED = "ended", _("Ended")
        CANCELLED = "cancelled", _("Cancelled")

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="hearings")
    public_id = models.CharField(max_length=40, unique=True, default=new_public_token)
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    state = models.CharField(max_length=12, choices=State.choices, default=State.SCHEDULED)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    location_note = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["starts_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(ends_at__gt=models.F("starts_at")), name="hearing_ends_after_start"
            ),
            models.UniqueConstraint(
                fields=["case"],
                condition=Q(state__in=["scheduled", "live"]),
                name="one_open_hearing_per_case",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case.tracking_number} @ {self.starts_at:%Y-%m-%d %H:%M}"


# Agreement models live in their own module; importing them here registers them with the app.
from .agreements.models import (  # noqa: E402, F401
    Agreement,
    AgreementComment,
    AgreementSignature,
    AgreementVersion,
    FollowUp,
    FollowUpAnswer,
    LedgerHead,
    SigningChallenge,
)
