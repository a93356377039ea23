"""Demo data for supervision: beat schedules, a few stage deadline rules, the statistics
projection of the demo cases (their dates were moved back after the fact), one scan of the
deadlines, and a supervision notice waiting for an answer."""

from __future__ import annotations

from datetime import timedelta

from django.core.management import call_command
from django.utils import timezone

from ..models import Case, StageDeadlineRule, Status
from .figures import figures_rebuild
from .selectors import notice_recipients
from .services import supervision_notice_issue, supervision_scan


def load(context: dict) -> list[str]:
    call_command("setup_schedules", verbosity=0, stdout=_Null())
    StageDeadlineRule.objects.get_or_create(
        category="unpaid_wages",
        status=Status.ACCEPTED,
        defaults={"working_days": 2, "escalate_after_days": 1},
    )
    StageDeadlineRule.objects.get_or_create(
        category="",
        status=Status.SCHEDULED,
        defaults={"working_days": 15, "escalate_after_days": 3},
    )
    figures_rebuild()
    scan = supervision_scan()
    notices = 0
    case = (
        Case.objects.filter(status=Status.MATCHED, expert__isnull=False)
        .select_related("community__street", "expert")
        .first()
    )
    if case is not None:
        coordinators = [u for u in notice_recipients(case) if u.pk != case.expert_id]
        if coordinators:
            supervision_notice_issue(
                case=case,
                issued_by=coordinators[0],
                to_user=case.expert,
                text="请在三个工作日内与双方确定调解时间，并回复安排情况。",
                due=timezone.now() + timedelta(days=3),
            )
            notices = 1
    return [
        f"supervision: {len(scan.overdue)} overdue cases flagged, {len(scan.escalated)} "
        f"escalated, {notices} notice open — coordinators see /supervision/ and /stats/; "
        "public figures at /stats/public/"
    ]


class _Null:
    def write(self, *_args) -> None:
        pass

    def flush(self) -> None:
        pass
