"""The case lifecycle as data: which transitions exist, who may make them, and stage deadlines."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.utils import timezone

from .models import Status

# (from, to) -> the case roles allowed to make the move. "system" is the platform itself
# (Celery tasks, matching); "coordinator" means a coordinator of the case's community or street.
TRANSITIONS: dict[tuple[str, str], frozenset[str]] = {
    (Status.REGISTERED, Status.ACCEPTED): frozenset({"coordinator"}),
    (Status.REGISTERED, Status.DECLINED): frozenset({"coordinator"}),
    (Status.ACCEPTED, Status.MATCHED): frozenset({"coordinator", "expert", "system"}),
    (Status.MATCHED, Status.ACCEPTED): frozenset({"coordinator", "expert", "system"}),
    (Status.MATCHED, Status.SCHEDULED): frozenset({"coordinator", "expert", "system"}),
    (Status.SCHEDULED, Status.MATCHED): frozenset({"coordinator", "expert"}),
    (Status.SCHEDULED, Status.IN_SESSION): frozenset({"coordinator", "expert"}),
    (Status.IN_SESSION, Status.AGREED): frozenset({"coordinator", "expert", "system"}),
    (Status.IN_SESSION, Status.NOT_AGREED): frozenset({"coordinator", "expert", "system"}),
    (Status.SCHEDULED, Status.AGREED): frozenset({"system"}),
    (Status.SCHEDULED, Status.NOT_AGREED): frozenset({"system"}),
    (Status.REGISTERED, Status.WITHDRAWN): frozenset({"applicant"}),
    (Status.ACCEPTED, Status.WITHDRAWN): frozenset({"applicant"}),
    (Status.MATCHED, Status.WITHDRAWN): frozenset({"applicant"}),
    (Status.SCHEDULED, Status.WITHDRAWN): frozenset({"applicant"}),
    # A party refuses to sign the agreement after the session was concluded as agreed.
    (Status.AGREED, Status.NOT_AGREED): frozenset({"system"}),
    (Status.AGREED, Status.FOLLOWED_UP): frozenset({"coordinator", "system"}),
    (Status.NOT_AGREED, Status.FOLLOWED_UP): frozenset({"coordinator", "system"}),
    (Status.WITHDRAWN, Status.FOLLOWED_UP): frozenset({"coordinator", "system"}),
    (Status.FOLLOWED_UP, Status.CLOSED): frozenset({"coordinator", "system"}),
}

# Consent may be given until the session starts; it may be withdrawn during it too.
CONSENT_GRANT_STATES = frozenset(
    {Status.REGISTERED, Status.ACCEPTED, Status.MATCHED, Status.SCHEDULED}
)
CONSENT_WITHDRAW_STATES = CONSENT_GRANT_STATES | {Status.IN_SESSION}


def allowed_roles(from_status: str, to_status: str) -> frozenset[str]:
    return TRANSITIONS.get((from_status, to_status), frozenset())


def add_working_days(start: datetime, days: int) -> datetime:
    """`days` working days (Monday to Friday, in local time) after `start`."""
    local = timezone.localtime(start)
    remaining = days
    while remaining > 0:
        local += timedelta(days=1)
        if local.weekday() < 5:
            remaining -= 1
    return local


def stage_rule(status: str, category: str | None = None) -> tuple[int, int] | None:
    """(working days allowed, working days past the deadline before escalation) for a stage.

    A StageDeadlineRule for the category wins, then the rule for every category, then
    settings.STAGE_DEADLINE_DAYS_BY_CATEGORY and settings.STAGE_DEADLINE_DAYS (the defaults);
    None when the stage has no deadline."""
    from .models import StageDeadlineRule

    rules = {
        rule.category: rule
        for rule in StageDeadlineRule.objects.filter(
            status=status, category__in=[category or "", ""]
        )
    }
    rule = rules.get(category or "") or rules.get("")
    if rule is not None:
        return rule.working_days, rule.escalate_after_days
    overrides = settings.STAGE_DEADLINE_DAYS_BY_CATEGORY.get(category or "", {})
    days = overrides.get(status, settings.STAGE_DEADLINE_DAYS.get(status))
    if days is None:
        return None
    return days, settings.SUPERVISION_ESCALATE_AFTER_DAYS


def stage_deadline(status: str, start: datetime, category: str | None = None) -> datetime | None:
    """When a case entering `status` at `start` becomes overdue; None for final states."""
    rule = stage_rule(status, category)
    if rule is None:
        return None
    return add_working_days(start, rule[0])
