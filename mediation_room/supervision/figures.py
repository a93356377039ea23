"""The per-case statistics projection (CaseFigures): updated by every lifecycle transition in
the same transaction, and rebuildable from the transition events at any time."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import connection, transaction

from ..models import Case, CaseEvent, CaseFigures, Status

# Stages whose exits are counted on time / late, in lifecycle order.
TIMED_STAGES = (
    Status.REGISTERED,
    Status.ACCEPTED,
    Status.MATCHED,
    Status.SCHEDULED,
    Status.AGREED,
)
OUTCOMES = (Status.AGREED, Status.NOT_AGREED, Status.WITHDRAWN)


def _seconds(later: datetime, earlier: datetime) -> int:
    return max(0, int((later - earlier).total_seconds()))


def _apply(
    figures: CaseFigures, *, from_status: str, to_status: str, at: datetime, data: dict[str, Any]
) -> None:
    """Fold one transition event into the case's figures."""
    if to_status == Status.ACCEPTED and figures.accepted_at is None:
        figures.accepted_at = at
        figures.seconds_to_accept = _seconds(at, figures.registered_at)
    elif to_status == Status.IN_SESSION and figures.hearing_at is None:
        figures.hearing_at = at
        figures.seconds_to_hearing = _seconds(at, figures.registered_at)
    elif to_status == Status.AGREED and figures.agreed_at is None:
        figures.agreed_at = at
        figures.seconds_to_agreement = _seconds(at, figures.registered_at)
    if to_status in OUTCOMES and figures.outcome != Status.AGREED:
        figures.outcome = to_status
    if to_status == Status.MATCHED and data.get("expert_id"):
        figures.expert_id = data["expert_id"]
    if from_status in TIMED_STAGES and "on_time" in data:
        field = f"{from_status}_{'on_time' if data['on_time'] else 'late'}"
        setattr(figures, field, getattr(figures, field) + 1)
    if from_status == Status.AGREED and to_status == Status.FOLLOWED_UP and "on_time" in data:
        figures.agreement_kept = bool(data["on_time"]) and data.get("fulfilled", True) is not False


def figures_record_transition(*, case: Case, event: CaseEvent) -> None:
    """Called by every transition, inside its transaction, with the case row already locked."""
    figures = CaseFigures.objects.filter(pk=case.pk).first() or CaseFigures(
        case=case, community_id=case.community_id, registered_at=case.created_at
    )
    _apply(
        figures,
        from_status=event.from_status,
        to_status=event.to_status,
        at=event.created_at,
        data=event.data or {},
    )
    if event.to_status == Status.ACCEPTED and event.from_status == Status.MATCHED:
        figures.expert_id = None  # the mediator withdrew; matching starts again
    figures.save()


@transaction.atomic
def figures_rebuild() -> int:
    """Recompute every case's figures from the transition events; returns the number of rows."""
    CaseFigures.objects.all().delete()
    if connection.vendor == "postgresql":
        return _rebuild_sql()
    return _rebuild_python()


def _rebuild_python() -> int:
    rows: dict[int, CaseFigures] = {}
    cases = {
        c["pk"]: c
        for c in Case.objects.filter(events__kind="transition")
        .values("pk", "community_id", "created_at", "expert_id")
        .distinct()
    }
    events = CaseEvent.objects.filter(kind="transition").order_by("case_id", "created_at", "pk")
    for event in events.iterator(chunk_size=5000):
        case = cases[event.case_id]
        figures = rows.get(event.case_id)
        if figures is None:
            figures = rows[event.case_id] = CaseFigures(
                case_id=case["pk"],
                community_id=case["community_id"],
                registered_at=case["created_at"],
            )
        _apply(
            figures,
            from_status=event.from_status,
            to_status=event.to_status,
            at=event.created_at,
            data=event.data or {},
        )
    for case_id, figures in rows.items():
        figures.expert_id = cases[case_id]["expert_id"]
    CaseFigures.objects.bulk_create(rows.values(), batch_size=2000)
    return len(rows)


def _rebuild_sql() -> int:
    case_table = Case._meta.db_table
    event_table = CaseEvent._meta.db_table
    figures_table = CaseFigures._meta.db_table

    def first(status: str) -> str:
        return f"MIN(e.created_at) FILTER (WHERE e.to_status = '{status}')"

    def seconds(status: str) -> str:
        # GREATEST would turn a missing milestone (NULL) into 0, hence the CASE.
        span = f"EXTRACT(EPOCH FROM {first(status)} - c.created_at)"
        return f"CASE WHEN {span} < 0 THEN 0 ELSE FLOOR({span})::integer END"

    def exits(stage: str, on_time: bool) -> str:
        flag = "true" if on_time else "false"
        return (
            f"COUNT(*) FILTER (WHERE e.from_status = '{stage}' "
            f"AND (e.data ->> 'on_time') = '{flag}')"
        )

    stage_columns = ", ".join(
        f"{stage}_on_time, {stage}_late" for stage in (s.value for s in TIMED_STAGES)
    )
    stage_values = ", ".join(
        f"{exits(stage, True)}, {exits(stage, False)}" for stage in (s.value for s in TIMED_STAGES)
    )
    sql = f"""
        INSERT INTO {figures_table} (
            case_id, community_id, registered_at, expert_id,
            accepted_at, hearing_at, agreed_at,
            seconds_to_accept, seconds_to_hearing, seconds_to_agreement,
            outcome, {stage_columns}, agreement_kept)
        SELECT c.id, c.community_id, c.created_at, c.expert_id,
               {first("accepted")}, {first("in_session")}, {first("agreed")},
               {seconds("accepted")}, {seconds("in_session")}, {seconds("agreed")},
               CASE WHEN bool_or(e.to_status = 'agreed') THEN 'agreed'
                    WHEN bool_or(e.to_status = 'not_agreed') THEN 'not_agreed'
                    WHEN bool_or(e.to_status = 'withdrawn') THEN 'withdrawn'
                    ELSE '' END,
               {stage_values},
               bool_or((e.data ->> 'on_time') = 'true'
                       AND COALESCE(e.data ->> 'fulfilled', 'true') <> 'false')
                 FILTER (WHERE e.from_status = 'agreed' AND e.to_status = 'followed_up'
                         AND e.data ? 'on_time')
          FROM {case_table} c
          JOIN {event_table} e ON e.case_id = c.id AND e.kind = 'transition'
         GROUP BY c.id
    """  # noqa: S608 - only our own table and status names, no outside input
    with connection.cursor() as cursor:
        cursor.execute(sql)
        return cursor.rowcount
