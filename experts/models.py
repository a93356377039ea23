"""The expert pool (百人专家团): who the experts are, when they are free, whom they must not
mediate for, and the invitations that bring an expert to a case."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Community, TimeStamped
from accounts.phones import validate_mobile
from mediation_room.models import Category


class ExpertKind(models.TextChoices):
    LAWYER = "lawyer", _("Lawyer")
    NPC_DEPUTY = "npc_deputy", _("People's congress deputy")
    PARTY_DEPUTY = "party_deputy", _("Party congress deputy")
    CPPCC_MEMBER = "cppcc_member", _("CPPCC member")
    PEOPLES_MEDIATOR = "peoples_mediator", _("People's mediator")
    LOCAL_WORTHY = "local_worthy", _("Respected local figure")
    COUNSELLOR = "counsellor", _("Counsellor")
    LEGAL_WORKER = "legal_worker", _("Legal worker")


def new_public_id() -> str:
    return secrets.token_urlsafe(8)


def pack_codes(values: list[str] | tuple[str, ...] | set[str]) -> str:
    """Store a small set of codes as ",a,b," so one LIKE '%,a,%' finds it on PostgreSQL and SQLite
    alike (the embedded demo runs on SQLite, which has no array type)."""
    clean = sorted({v.strip() for v in values if v and v.strip() and "," not in v})
    return f",{','.join(clean)}," if clean else ""


def unpack_codes(packed: str) -> list[str]:
    return [v for v in (packed or "").split(",") if v]


class ExpertProfile(TimeStamped):
    """One member of the pool. `rating_sum` / `rating_count` are fed by the voting app through
    `experts.services.expert_rating_record`; the average is their quotient."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="expert_profile"
    )
    public_id = models.CharField(max_length=20, unique=True, default=new_public_id)
    public_name = models.CharField(
        _("public name"), max_length=40, help_text=_("Shown in the directory, e.g. Lawyer Shen.")
    )
    kind = models.CharField(_("kind"), max_length=20, choices=ExpertKind.choices)
    specialties = models.CharField(
        _("specialties"),
        max_length=200,
        blank=True,
        help_text=_("Case categories, stored as ,code,code,"),
    )
    communities = models.ManyToManyField(
        Community, blank=True, related_name="experts_serving", verbose_name=_("communities served")
    )
    home_community = models.ForeignKey(
        Community,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="resident_experts",
        verbose_name=_("home community"),
        help_text=_("Where the expert lives: they never mediate a neighbour dispute there."),
    )
    languages = models.CharField(
        _("languages and dialects"), max_length=200, blank=True, help_text=_("Stored as ,a,b,")
    )
    bio = models.TextField(_("short bio"), max_length=1000, blank=True)
    load_cap = models.PositiveSmallIntegerField(
        _("most cases at once"), default=5, help_text=_("Open cases plus pending invitations.")
    )
    active = models.BooleanField(_("taking cases"), default=True)
    rating_sum = models.PositiveIntegerField(default=0)
    rating_count = models.PositiveIntegerField(default=0)
    # The weekly slots folded into hour bits (see matching.week_hours), so that ranking asks
    # "free when the parties are?" with one AND per expert instead of a scan of every slot.
    # Rebuilt by the availability services whenever slots change.
    week_hours_lo = models.BigIntegerField(default=0, editable=False)
    week_hours_hi = models.BigIntegerField(default=0, editable=False)

    class Meta:
        ordering = ["public_name", "pk"]
        indexes = [
            models.Index(fields=["active", "kind"]),
            # The specialists of each category, so that ranking reads them without a scan of the
            # pool (matching.rank_candidates writes the same condition).
            *(
                models.Index(
                    fields=["id"],
                    condition=Q(active=True, specialties__contains=f",{code},"),
                    name=f"expert_spec_{code}",
                )
                for code in Category.values
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(kind__in=[k.value for k in ExpertKind]), name="expert_kind_valid"
            ),
            models.CheckConstraint(condition=Q(load_cap__gte=1), name="expert_load_cap_positive"),
            models.CheckConstraint(
                condition=Q(rating_sum__lte=F("rating_count") * 5), name="expert_rating_in_range"
            ),
        ]

    def __str__(self) -> str:
        return self.public_name

    @property
    def specialty_list(self) -> list[str]:
        return unpack_codes(self.specialties)

    @property
    def specialty_labels(self) -> list[str]:
        from mediation_room.models import Category

        labels = dict(Category.choices)
        return [str(labels[c]) for c in self.specialty_list if c in labels]

    @property
    def language_list(self) -> list[str]:
        return unpack_codes(self.languages)

    @property
    def rating_average(self) -> float | None:
        return round(self.rating_sum / self.rating_count, 1) if self.rating_count else None


class AvailabilitySlot(TimeStamped):
    """A weekly window in local time (Asia/Shanghai) when the expert can hold sessions."""

    class Weekday(models.IntegerChoices):
        MONDAY = 0, _("Monday")
        TUESDAY = 1, _("Tuesday")
        WEDNESDAY = 2, _("Wednesday")
        THURSDAY = 3, _("Thursday")
        FRIDAY = 4, _("Friday")
        SATURDAY = 5, _("Saturday")
        SUNDAY = 6, _("Sunday")

    profile = models.ForeignKey(ExpertProfile, on_delete=models.CASCADE, related_name="slots")
    weekday = models.PositiveSmallIntegerField(_("weekday"), choices=Weekday.choices)
    start_time = models.TimeField(_("from"))
    end_time = models.TimeField(_("until"))

    class Meta:
        ordering = ["profile", "weekday", "start_time"]
        indexes = [models.Index(fields=["weekday", "start_time", "end_time"])]
        constraints = [
            models.CheckConstraint(condition=Q(weekday__lte=6), name="slot_weekday_valid"),
            models.CheckConstraint(
                condition=Q(end_time__gt=F("start_time")), name="slot_ends_after_start"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_weekday_display()} {self.start_time:%H:%M}-{self.end_time:%H:%M}"


class AvailabilityException(TimeStamped):
    """A dated change to the weekly pattern: away (the whole day, or between two times), or an
    extra window on that date."""

    profile = models.ForeignKey(ExpertProfile, on_delete=models.CASCADE, related_name="exceptions")
    date = models.DateField(_("date"))
    available = models.BooleanField(
        _("available"), default=False, help_text=_("Off: away. On: an extra window that day.")
    )
    start_time = models.TimeField(_("from"), null=True, blank=True)
    end_time = models.TimeField(_("until"), null=True, blank=True)
    note = models.CharField(_("note"), max_length=100, blank=True)

    class Meta:
        ordering = ["profile", "date", "start_time"]
        constraints = [
            models.CheckConstraint(
                condition=(Q(start_time__isnull=True) & Q(end_time__isnull=True))
                | (
                    Q(start_time__isnull=False)
                    & Q(end_time__isnull=False)
                    & Q(end_time__gt=F("start_time"))
                ),
                name="exception_times_valid",
            ),
            # An extra window needs its times; only "away" may cover the whole day.
            models.CheckConstraint(
                condition=Q(available=False) | Q(start_time__isnull=False),
                name="exception_extra_window_has_times",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.date} {'+' if self.available else '-'}"

    @property
    def whole_day(self) -> bool:
        return self.start_time is None


class DeclaredConflict(TimeStamped):
    """The expert declared a conflict of interest with a person (relative, client, employer...):
    they are never proposed for a case in which that person is a party."""

    profile = models.ForeignKey(ExpertProfile, on_delete=models.CASCADE, related_name="conflicts")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.CASCADE,
        related_name="+",
    )
    phone = models.CharField(max_length=20, blank=True, validators=[validate_mobile])
    note = models.CharField(_("relationship"), max_length=100, blank=True)

    class Meta:
        indexes = [models.Index(fields=["phone"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(user__isnull=False) | ~Q(phone=""), name="conflict_names_someone"
            )
        ]

    def __str__(self) -> str:
        return f"{self.profile} ≠ {self.user_id or '***'}"


class InvitationState(models.TextChoices):
    PENDING = "pending", _("Waiting for an answer")
    ACCEPTED = "accepted", _("Accepted")
    DECLINED = "declined", _("Declined")
    LAPSED = "lapsed", _("No answer in time")
    CANCELLED = "cancelled", _("Withdrawn by the coordinator")


class Invitation(TimeStamped):
    """An offer of one case to one expert. The database holds the rules that matter when two
    requests race: one pending invitation per case, one accepted invitation per case."""

    case = models.ForeignKey(
        "mediation_room.Case", on_delete=models.CASCADE, related_name="expert_invitations"
    )
    expert = models.ForeignKey(ExpertProfile, on_delete=models.PROTECT, related_name="invitations")
    state = models.CharField(
        max_length=12, choices=InvitationState.choices, default=InvitationState.PENDING
    )
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("Empty when the platform invited the top candidate by itself."),
    )
    rank = models.PositiveSmallIntegerField(null=True, blank=True)
    score = models.IntegerField(null=True, blank=True)
    expires_at = models.DateTimeField()
    responded_at = models.DateTimeField(null=True, blank=True)
    reason = models.CharField(_("reason"), max_length=500, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # An expert's waiting invitations, and recent assignments by date, from the index.
            models.Index(fields=["expert", "state", "responded_at"]),
            models.Index(fields=["state", "expires_at"]),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=[s.value for s in InvitationState]),
                name="invitation_state_valid",
            ),
            models.UniqueConstraint(
                fields=["case"],
                condition=Q(state="pending"),
                name="one_pending_invitation_per_case",
            ),
            models.UniqueConstraint(
                fields=["case"],
                condition=Q(state="accepted"),
                name="one_accepted_invitation_per_case",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case_id} → {self.expert_id} ({self.state})"
