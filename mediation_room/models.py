import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Community, TimeStamped
from accounts.phones import validate_mobile

# The agreement models live in their own module and refer to Case and Party by name, so that
# neither module imports the other's classes; importing it here registers them with this app.
from .agreements import models as agreement_models  # noqa: F401


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


# --- supervision (督办): stage deadline rules, overrun alerts, supervision notices -----------------


class StageDeadlineRule(TimeStamped):
    """How many working days a case may stay in a stage, per category (blank = every category).

    Rules override settings.STAGE_DEADLINE_DAYS (and STAGE_DEADLINE_DAYS_BY_CATEGORY); a
    category's own rule wins over the blank one. Edited by staff in the admin."""

    category = models.CharField(
        _("category"),
        max_length=20,
        choices=Category.choices,
        blank=True,
        help_text=_("Leave empty for a rule that applies to every category."),
    )
    status = models.CharField(_("stage"), max_length=20, choices=Status.choices)
    working_days = models.PositiveSmallIntegerField(_("working days allowed"))
    escalate_after_days = models.PositiveSmallIntegerField(
        _("escalate after (working days)"),
        default=2,
        help_text=_(
            "Working days past the deadline after which the street-level coordinator is alerted."
        ),
    )

    class Meta:
        ordering = ["status", "category"]
        constraints = [
            models.UniqueConstraint(fields=["category", "status"], name="uniq_stage_rule"),
            models.CheckConstraint(
                condition=Q(status__in=[s.value for s in Status]), name="stage_rule_status_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.category or '*'} {self.status}: {self.working_days}"


class SupervisionAlert(TimeStamped):
    """One overrun of one stage of a case, at one level. The unique constraint is what makes the
    periodic scan safe to run twice: each stage overrun is announced once, and escalated once."""

    class Level(models.TextChoices):
        OVERDUE = "overdue", _("Overdue")
        ESCALATED = "escalated", _("Escalated to the street")

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="supervision_alerts")
    level = models.CharField(max_length=12, choices=Level.choices)
    stage = models.CharField(max_length=20, choices=Status.choices)
    stage_entered_at = models.DateTimeField()
    deadline = models.DateTimeField()

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["case", "stage_entered_at", "level"], name="uniq_alert_per_stage_level"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case_id} {self.stage} {self.level}"


class SupervisionNotice(TimeStamped):
    """A supervision notice (督办单): a coordinator (or the platform) asks the person responsible
    for a case to act and answer by a date. It stays on their list until answered."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="supervision_notices")
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("Empty when the platform issued it."),
    )
    to_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="supervision_notices"
    )
    text = models.CharField(_("what must be done"), max_length=1000)
    due = models.DateTimeField(_("answer by"))
    answered_at = models.DateTimeField(null=True, blank=True)
    answer = models.CharField(_("answer"), max_length=1000, blank=True)
    # Set by platform-issued notices so that asking twice for the same thing opens one notice.
    key = models.CharField(max_length=200, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["to_user", "answered_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["key"], condition=~Q(key=""), name="uniq_supervision_notice_key"
            ),
            models.CheckConstraint(
                condition=Q(answered_at__isnull=True) | ~Q(answer=""),
                name="supervision_answer_has_text",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case_id} → {self.to_user_id}"

    @property
    def is_open(self) -> bool:
        return self.answered_at is None


class CaseFigures(models.Model):
    """Per-case figures behind the statistics (durations, outcome, stages left on time or late),
    a projection of the case's transition events kept current by every transition (see
    mediation_room.supervision.figures) and rebuildable from the events (`stats_rebuild`).
    The dashboard aggregates this narrow table instead of the events, in constant time per case.
    A case that has not moved since registration has no row yet."""

    case = models.OneToOneField(
        Case, primary_key=True, on_delete=models.CASCADE, related_name="figures"
    )
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    registered_at = models.DateTimeField()
    expert = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        db_index=False,
    )
    accepted_at = models.DateTimeField(null=True, blank=True)
    hearing_at = models.DateTimeField(null=True, blank=True)
    agreed_at = models.DateTimeField(null=True, blank=True)
    seconds_to_accept = models.PositiveIntegerField(null=True, blank=True)
    seconds_to_hearing = models.PositiveIntegerField(null=True, blank=True)
    seconds_to_agreement = models.PositiveIntegerField(null=True, blank=True)
    outcome = models.CharField(max_length=12, blank=True)
    registered_on_time = models.PositiveSmallIntegerField(default=0)
    registered_late = models.PositiveSmallIntegerField(default=0)
    accepted_on_time = models.PositiveSmallIntegerField(default=0)
    accepted_late = models.PositiveSmallIntegerField(default=0)
    matched_on_time = models.PositiveSmallIntegerField(default=0)
    matched_late = models.PositiveSmallIntegerField(default=0)
    scheduled_on_time = models.PositiveSmallIntegerField(default=0)
    scheduled_late = models.PositiveSmallIntegerField(default=0)
    agreed_on_time = models.PositiveSmallIntegerField(default=0)
    agreed_late = models.PositiveSmallIntegerField(default=0)
    # Set when the agreement's follow-up is recorded: kept on time, and not marked unfulfilled.
    agreement_kept = models.BooleanField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "case figures"
        indexes = [
            models.Index(fields=["community", "registered_at"]),
            # The dashboard's medians skip to the middle of these instead of sorting the
            # durations; the scope's columns are included so the scan never visits the table.
            *(
                models.Index(
                    fields=[column],
                    include=["community", "registered_at"],
                    condition=Q(**{f"{column}__isnull": False}),
                    name=f"case_figures_{column.removeprefix('seconds_')}",
                )
                for column in ("seconds_to_accept", "seconds_to_hearing", "seconds_to_agreement")
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=["", "agreed", "not_agreed", "withdrawn"]),
                name="case_figures_outcome_valid",
            )
        ]

    def __str__(self) -> str:
        return f"figures of {self.case_id}"
