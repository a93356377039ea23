"""The coordinators' statistics dashboard and the public headline figures.

Every figure is about the cases *registered* in the chosen period and communities. Outcomes and
milestones come from the cases' transition events (CaseEvent kind "transition"):
- concluded = reached "agreed" or "not agreed" at some point (a case later followed up or closed
  keeps its outcome); withdrawn cases are counted apart and excluded from the agreement rate;
- agreement rate = agreed ÷ concluded;
- days to acceptance / hearing / agreement = from registration to the first transition into
  "accepted" / "in session" / "agreed" (medians over the cases that got there);
- on-time rate of a stage = stages left before their deadline ÷ (stages left + stages still open
  and already past the deadline); the deadline of each stage left is recorded in its event.

The number of queries does not depend on the number of cases (guarded by a test)."""

from __future__ import annotations

import importlib
import statistics as pystats
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.apps import apps
from django.conf import settings
from django.db import connection
from django.db.models import Avg, Count, Q, QuerySet
from django.db.models.functions import TruncMonth
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Community, User
from accounts.selectors import communities_for_coordinator

from ..models import Case, CaseEvent, Category, Status

SECONDS_PER_DAY = 86400
MILESTONES = ("accepted", "in_session", "agreed")
# Stages whose on-time rate is shown, in lifecycle order.
TIMED_STAGES = (
    Status.REGISTERED,
    Status.ACCEPTED,
    Status.MATCHED,
    Status.SCHEDULED,
    Status.AGREED,
)


@dataclass(frozen=True)
class Period:
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive


def scoped_cases(
    user: User, *, community_id: int | None = None, period: Period | None = None
) -> QuerySet[Case]:
    """Cases a coordinator may count: their communities only, optionally one community and a
    registration period. Built as one SQL subquery (no query of its own)."""
    qs = Case.objects.filter(community__in=communities_for_coordinator(user))
    if community_id:
        qs = qs.filter(community_id=community_id)
    return _in_period(qs, period)


def _in_period(qs: QuerySet[Case], period: Period | None) -> QuerySet[Case]:
    if period and period.start:
        qs = qs.filter(created_at__gte=period.start)
    if period and period.end:
        qs = qs.filter(created_at__lt=period.end)
    return qs


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _days(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds / SECONDS_PER_DAY, 1)


# --- the facts query: one row of per-case milestones, aggregated in SQL ------------------------------


def _milestones_sql(cases: QuerySet[Case]) -> tuple[str, list[Any]]:
    """SQL (with params) of one row per scoped case: id, registration time, expert, and the first
    time it was accepted / heard / agreed, and whether it ended not agreed / withdrawn."""
    inner, params = cases.order_by().values("id", "created_at", "expert_id").query.sql_with_params()
    event = CaseEvent._meta.db_table
    sql = f"""
        SELECT s.id, s.created_at, s.expert_id,
               MIN(e.created_at) FILTER (WHERE e.to_status = 'accepted') AS accepted_at,
               MIN(e.created_at) FILTER (WHERE e.to_status = 'in_session') AS hearing_at,
               MIN(e.created_at) FILTER (WHERE e.to_status = 'agreed') AS agreed_at,
               COUNT(e.id) FILTER (WHERE e.to_status = 'not_agreed') AS not_agreed,
               COUNT(e.id) FILTER (WHERE e.to_status = 'withdrawn') AS withdrawn
          FROM ({inner}) s
          LEFT JOIN {event} e
            ON e.case_id = s.id AND e.kind = 'transition'
           AND e.to_status IN ('accepted', 'in_session', 'agreed', 'not_agreed', 'withdrawn')
         GROUP BY s.id, s.created_at, s.expert_id
    """  # noqa: S608 - only our own table names and Django-compiled SQL; values are parameters
    return sql, list(params)


def _facts_postgres(cases: QuerySet[Case], *, per_expert: bool) -> list[dict[str, Any]]:
    milestones, params = _milestones_sql(cases)
    user_table = User._meta.db_table

    def median(col: str) -> str:
        return (
            f"percentile_cont(0.5) WITHIN GROUP (ORDER BY EXTRACT(EPOCH FROM (m.{col} - "
            "m.created_at)))"
        )

    group = "m.expert_id" if per_expert else "()"
    select_expert = (
        "m.expert_id, MAX(u.display_name) AS display_name, MAX(u.username) AS username,"
        if per_expert
        else ""
    )
    join_user = f"LEFT JOIN {user_table} u ON u.id = m.expert_id" if per_expert else ""
    where = "WHERE m.expert_id IS NOT NULL" if per_expert else ""
    sql = f"""
        SELECT {select_expert}
               COUNT(*) AS total,
               COUNT(m.agreed_at) AS agreed,
               COUNT(*) FILTER (WHERE m.agreed_at IS NULL AND m.not_agreed > 0) AS not_agreed,
               COUNT(*) FILTER (WHERE m.withdrawn > 0) AS withdrawn,
               {median("accepted_at")} AS to_accept,
               {median("hearing_at")} AS to_hearing,
               {median("agreed_at")} AS to_agreement
          FROM ({milestones}) m {join_user}
          {where}
         GROUP BY {group}
         ORDER BY 1
    """  # noqa: S608 - see _milestones_sql
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        cols = [c.name for c in cursor.description]
        return [dict(zip(cols, row, strict=True)) for row in cursor.fetchall()]


def _facts_python(cases: QuerySet[Case], *, per_expert: bool) -> list[dict[str, Any]]:
    """The same figures for databases without percentile_cont (SQLite in the demo)."""
    milestones, params = _milestones_sql(cases)
    with connection.cursor() as cursor:
        cursor.execute(milestones, params)
        rows = cursor.fetchall()
    names = {}
    if per_expert:
        ids = {r[2] for r in rows if r[2]}
        names = {
            u.pk: (u.display_name, u.username)
            for u in User.objects.filter(pk__in=ids).only("display_name", "username")
        }

    def parse(value: Any) -> datetime | None:
        if value is None or isinstance(value, datetime):
            return value
        return datetime.fromisoformat(str(value))

    groups: dict[Any, list[tuple]] = {}
    for row in rows:
        if per_expert and not row[2]:
            continue
        groups.setdefault(row[2] if per_expert else None, []).append(row)
    out = []
    for key in sorted(groups, key=lambda k: (k is None, k or 0)):
        group = groups[key]

        def med(index: int, group: list[tuple] = group) -> float | None:
            spans = [(parse(r[index]) - parse(r[1])).total_seconds() for r in group if r[index]]
            return pystats.median(spans) if spans else None

        fact = {
            "total": len(group),
            "agreed": sum(1 for r in group if r[5]),
            "not_agreed": sum(1 for r in group if not r[5] and r[6]),
            "withdrawn": sum(1 for r in group if r[7]),
            "to_accept": med(3),
            "to_hearing": med(4),
            "to_agreement": med(5),
        }
        if per_expert:
            fact.update(
                expert_id=key,
                display_name=names.get(key, ("", ""))[0],
                username=names.get(key, ("", ""))[1],
            )
        out.append(fact)
    if not per_expert and not out:
        out = [dict.fromkeys(("to_accept", "to_hearing", "to_agreement"), None)]
        out[0].update(total=0, agreed=0, not_agreed=0, withdrawn=0)
    return out


def _facts(cases: QuerySet[Case], *, per_expert: bool) -> list[dict[str, Any]]:
    if connection.vendor == "postgresql":
        return _facts_postgres(cases, per_expert=per_expert)
    return _facts_python(cases, per_expert=per_expert)


def _shape_facts(row: dict[str, Any]) -> dict[str, Any]:
    concluded = row["agreed"] + row["not_agreed"]
    return {
        "total": row["total"],
        "agreed": row["agreed"],
        "not_agreed": row["not_agreed"],
        "withdrawn": row["withdrawn"],
        "concluded": concluded,
        "agreement_rate": _rate(row["agreed"], concluded),
        "days_to_accept": _days(row["to_accept"]),
        "days_to_hearing": _days(row["to_hearing"]),
        "days_to_agreement": _days(row["to_agreement"]),
    }


# --- pluggable sources: agreement performance and satisfaction -----------------------------------


def agreement_performance(cases: QuerySet[Case], now: datetime) -> dict[str, Any]:
    """Agreements fulfilled on time. settings.STATS_AGREEMENT_PERFORMANCE may name a function
    (cases queryset) -> {"due": n, "on_time": n, "source": text} backed by the agreements'
    follow-up records; without one, the figure comes from the case events: an agreement counts
    as fulfilled on time when its follow-up visit (回访) was recorded before the follow-up
    deadline and not marked unfulfilled; due = follow-ups recorded + follow-ups overdue."""
    dotted = getattr(settings, "STATS_AGREEMENT_PERFORMANCE", "")
    if dotted:
        module, _sep, name = dotted.rpartition(".")
        figures = dict(getattr(importlib.import_module(module), name)(cases))
    else:
        done = CaseEvent.objects.filter(
            case__in=cases,
            kind="transition",
            from_status=Status.AGREED,
            to_status=Status.FOLLOWED_UP,
        ).aggregate(
            done=Count("pk"),
            on_time=Count(
                "pk",
                filter=Q(data__on_time=True)
                & (Q(data__fulfilled__isnull=True) | Q(data__fulfilled=True)),
            ),
        )
        late_open = cases.filter(status=Status.AGREED, stage_deadline__lt=now).count()
        figures = {
            "due": done["done"] + late_open,
            "on_time": done["on_time"],
            "source": _("follow-up visits recorded in the case events"),
        }
    figures["rate"] = _rate(figures["on_time"], figures["due"])
    return figures


def _rating_model():
    """The voting app's rating of a mediation (score per party), if it is installed."""
    for name in ("MediationRating", "Rating"):
        try:
            model = apps.get_model("voting", name)
        except LookupError:
            continue
        fields = {f.name for f in model._meta.get_fields()}
        if {"case", "score"} <= fields:
            return model
    return None


def satisfaction(cases: QuerySet[Case]) -> dict[str, Any]:
    """Average rating of the mediations by the parties; {"available": False} without ratings."""
    model = _rating_model()
    if model is None:
        return {"available": False, "by_expert": {}}
    ratings = model.objects.filter(case__in=cases)
    overall = ratings.aggregate(avg=Avg("score"), n=Count("pk"))
    by_expert: dict[int, dict[str, Any]] = {}
    if "expert" in {f.name for f in model._meta.get_fields()}:
        rows = ratings.values("expert_id").annotate(avg=Avg("score"), n=Count("pk")).order_by()
        by_expert = {r["expert_id"]: {"avg": round(float(r["avg"]), 2), "n": r["n"]} for r in rows}
    return {
        "available": True,
        "average": round(float(overall["avg"]), 2) if overall["avg"] is not None else None,
        "count": overall["n"],
        "by_expert": by_expert,
    }


# --- the dashboard ------------------------------------------------------------------------------------------


def on_time_by_stage(cases: QuerySet[Case], now: datetime) -> list[dict[str, Any]]:
    left = (
        CaseEvent.objects.filter(case__in=cases, kind="transition", data__has_key="on_time")
        .values("from_status")
        .annotate(total=Count("pk"), on_time=Count("pk", filter=Q(data__on_time=True)))
        .order_by()
    )
    left_by = {r["from_status"]: r for r in left}
    open_late = dict(
        cases.filter(stage_deadline__lt=now)
        .values_list("status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    out = []
    for stage in TIMED_STAGES:
        row = left_by.get(stage, {"total": 0, "on_time": 0})
        late_now = open_late.get(stage, 0)
        whole = row["total"] + late_now
        out.append(
            {
                "stage": stage,
                "label": Status(stage).label,
                "on_time": row["on_time"],
                "late": whole - row["on_time"],
                "open_late": late_now,
                "rate": _rate(row["on_time"], whole),
            }
        )
    return out


def dashboard(cases: QuerySet[Case], *, now: datetime | None = None) -> dict[str, Any]:
    """Every figure of the coordinators' dashboard for the given (already scoped) cases."""
    now = now or timezone.now()
    tz = ZoneInfo(settings.TIME_ZONE)
    base = cases.order_by()
    status_counts = dict(base.values_list("status").annotate(n=Count("pk")))
    category_counts = dict(base.values_list("category").annotate(n=Count("pk")))
    community_rows = (
        base.values("community_id", "community__name").annotate(n=Count("pk")).order_by("-n")
    )
    month_rows = (
        base.annotate(month=TruncMonth("created_at", tzinfo=tz))
        .values("month")
        .annotate(n=Count("pk"))
        .order_by("month")
    )
    facts = _shape_facts(_facts(base, per_expert=False)[0])
    sat = satisfaction(base)
    experts = []
    for row in _facts(base, per_expert=True):
        shaped = _shape_facts(row)
        shaped["name"] = row["display_name"] or row["username"]
        shaped["rating"] = sat["by_expert"].get(row["expert_id"])
        experts.append(shaped)
    return {
        "now": now,
        "by_status": [
            {"key": s.value, "label": s.label, "n": status_counts.get(s.value, 0)} for s in Status
        ],
        "by_category": [
            {"key": c.value, "label": c.label, "n": category_counts.get(c.value, 0)}
            for c in Category
        ],
        "by_community": [
            {"key": r["community_id"], "label": r["community__name"], "n": r["n"]}
            for r in community_rows
        ],
        "by_month": [
            {
                "key": r["month"].strftime("%Y-%m"),
                "label": r["month"].strftime("%Y-%m"),
                "n": r["n"],
            }
            for r in month_rows
        ],
        "facts": facts,
        "on_time": on_time_by_stage(base, now),
        "performance": agreement_performance(base, now),
        "satisfaction": sat,
        "experts": experts,
    }


def chart_data(board: dict[str, Any]) -> dict[str, Any]:
    """The JSON the page's charts draw (labels and values only, no personal data)."""

    def series(rows: list[dict[str, Any]]) -> dict[str, list]:
        return {"labels": [str(r["label"]) for r in rows], "values": [r["n"] for r in rows]}

    return {
        "status": series(board["by_status"]),
        "category": series(board["by_category"]),
        "community": series(board["by_community"]),
        "month": series(board["by_month"]),
        "on_time": {
            "labels": [str(r["label"]) for r in board["on_time"]],
            "values": [r["rate"] for r in board["on_time"]],
        },
    }


def public_headline(*, year: int | None = None) -> dict[str, Any]:
    """Anonymised platform-wide figures for the public page: counts and rates only."""
    cases = Case.objects.all()
    if year:
        tz = ZoneInfo(settings.TIME_ZONE)
        cases = _in_period(
            cases,
            Period(datetime(year, 1, 1, tzinfo=tz), datetime(year + 1, 1, 1, tzinfo=tz)),
        )
    facts = _shape_facts(_facts(cases.order_by(), per_expert=False)[0])
    facts["communities"] = Community.objects.filter(cases__in=cases).distinct().count()
    return facts
