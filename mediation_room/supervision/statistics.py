"""The coordinators' statistics dashboard and the public headline figures.

Every figure is about the cases *registered* in the chosen period and communities. Outcomes and
durations come from the cases' transition events (CaseEvent kind "transition"), through their
per-case projection CaseFigures (see figures.py):
- concluded = reached "agreed" or "not agreed" at some point (a case later followed up or closed
  keeps its outcome); withdrawn cases are counted apart and excluded from the agreement rate;
- agreement rate = agreed ÷ concluded;
- days to acceptance / hearing / agreement = from registration to the first transition into
  "accepted" / "in session" / "agreed" (medians over the cases that got there);
- on-time rate of a stage = stages left before their deadline ÷ (stages left + stages still open
  and already past the deadline); the deadline of each stage left is recorded in its event.

The number of queries does not depend on the number of cases (guarded by a test). The heavy
figures take two statements: one pass over the scope's cases for the breakdowns, and one over
the narrow projection table for the rest, whose medians are read from the duration indexes
instead of sorting every duration (see bench/stats.py for the times on 100,000 cases)."""

from __future__ import annotations

import importlib
import statistics as pystats
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from django.apps import apps
from django.conf import settings
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import Avg, Count, Exists, OuterRef, Q, QuerySet
from django.db.models.functions import TruncMonth
from django.utils import timezone
from django.utils.translation import gettext as _

from accounts.models import Community, User
from accounts.selectors import communities_for_coordinator

from ..models import Case, CaseFigures, Category, Status
from .figures import TIMED_STAGES

SECONDS_PER_DAY = 86400


@dataclass(frozen=True)
class Period:
    start: datetime | None = None  # inclusive
    end: datetime | None = None  # exclusive


@dataclass(frozen=True)
class Scope:
    """Which cases the figures are about: registered in `period`, in the communities
    `community_ids` (None = every community: no filter at all, which is also the fastest)."""

    community_ids: tuple[int, ...] | None
    period: Period = field(default_factory=Period)
    # Community names by id, fetched with the scope so that the breakdown by community needs
    # no query of its own.
    names: dict[int, str] = field(default_factory=dict, compare=False)

    def cases(self) -> QuerySet[Case]:
        qs = Case.objects.all()
        if self.community_ids is not None:
            qs = qs.filter(community_id__in=self.community_ids)
        if self.period.start:
            qs = qs.filter(created_at__gte=self.period.start)
        if self.period.end:
            qs = qs.filter(created_at__lt=self.period.end)
        return qs.order_by()

    def figures_where(self, alias: str = "f") -> tuple[str, list[Any]]:
        """SQL condition (and params) selecting the scope's rows of CaseFigures."""
        clauses, params = ["TRUE"], []
        if self.community_ids is not None:
            clauses.append(f"{alias}.community_id = ANY(%s)")
            params.append(list(self.community_ids))
        if self.period.start:
            clauses.append(f"{alias}.registered_at >= %s")
            params.append(self.period.start)
        if self.period.end:
            clauses.append(f"{alias}.registered_at < %s")
            params.append(self.period.end)
        return " AND ".join(clauses), params

    def figures(self) -> QuerySet[CaseFigures]:
        qs = CaseFigures.objects.all()
        if self.community_ids is not None:
            qs = qs.filter(community_id__in=self.community_ids)
        if self.period.start:
            qs = qs.filter(registered_at__gte=self.period.start)
        if self.period.end:
            qs = qs.filter(registered_at__lt=self.period.end)
        return qs


def coordinator_scope(
    user: User, *, community_id: int | None = None, period: Period | None = None
) -> Scope:
    """The scope a coordinator may count: their communities only (one query, which also
    brings the communities' names). Asking for a community outside them gives an empty scope,
    never that community's figures. A coordinator of every community gets an unfiltered scope."""
    mine = communities_for_coordinator(user)
    if community_id:
        mine = mine.filter(pk=community_id)
    rows = Community.objects.annotate(mine=Exists(mine.filter(pk=OuterRef("pk")))).values_list(
        "pk", "name", "mine"
    )
    rows = list(rows)
    ids = tuple(pk for pk, _name, is_mine in rows if is_mine)
    names = {pk: name for pk, name, is_mine in rows if is_mine}
    everything = bool(rows) and len(ids) == len(rows)
    return Scope(community_ids=None if everything else ids, period=period or Period(), names=names)


def _rate(part: int, whole: int) -> float | None:
    return round(100.0 * part / whole, 1) if whole else None


def _days(seconds: float | None) -> float | None:
    return None if seconds is None else round(float(seconds) / SECONDS_PER_DAY, 1)


# --- the figures query: one pass over CaseFigures, overall and per mediator ------------------------

SUM_COLUMNS = [f"{stage.value}_{kind}" for stage in TIMED_STAGES for kind in ("on_time", "late")]


# A scope with at least this share of a duration's values (as the index counts them) finds
# its median through the index; smaller ones sort their own values.
MEDIAN_INDEX_SHARE = 0.2
MEDIAN_COLUMNS = {
    "to_accept": "seconds_to_accept",
    "to_hearing": "seconds_to_hearing",
    "to_agreement": "seconds_to_agreement",
}


def _figures_postgres(scope: Scope) -> list[dict[str, Any]]:
    """One statement: a hash-aggregated pass over the scope's rows of CaseFigures per mediator
    (cases without one form their own group), the overall row summed from those groups, and
    the exact medians (as percentile_cont(0.5)). A scope with a good share of the durations
    (every street) reads its median from the partial index on that duration, skipping to the
    middle of the scope's values in index order instead of sorting them all; a smaller one
    sorts its own. The counts and the medians come from one snapshot, so the middle is always
    the right one."""
    where, params = scope.figures_where("f")
    table = CaseFigures._meta.db_table
    sums = ", ".join(f"SUM(f.{col}) AS {col}" for col in SUM_COLUMNS)
    total_sums = ", ".join(f"SUM(g.{col})::bigint AS {col}" for col in SUM_COLUMNS)
    expert_sums = ", ".join(f"g.{col}" for col in SUM_COLUMNS)
    counted = ", ".join(f"COUNT(f.{col}) AS n_{key}" for key, col in MEDIAN_COLUMNS.items())
    total_counted = ", ".join(f"SUM(g.n_{key})::bigint AS n_{key}" for key in MEDIAN_COLUMNS)

    def median(key: str) -> str:
        # percentile_cont(0.5) over the scope's n values: the middle one, or the mean of the
        # middle two. A scope holding a good share of the values skips to its middle in the
        # index; a small one (whose middle may lie far into the index) sorts its own values.
        col = MEDIAN_COLUMNS[key]
        return f"""(SELECT CASE
                     WHEN t.n_{key} >= %s * (SELECT GREATEST(i.reltuples, 1) FROM pg_class i
                                             WHERE i.oid = %s::regclass)
                     THEN (SELECT AVG(m.v)::float FROM (
                             SELECT f.{col} AS v FROM {table} f
                              WHERE {where} AND f.{col} IS NOT NULL
                              ORDER BY f.{col}
                             OFFSET (t.n_{key} - 1) / 2 LIMIT 2 - t.n_{key} %% 2) m)
                     ELSE (SELECT s.{key} FROM sorted s)
                     END FROM total t) AS {key}"""  # noqa: S608

    def median_params(key: str) -> list[Any]:
        index = f"case_figures_{MEDIAN_COLUMNS[key].removeprefix('seconds_')}"
        return [MEDIAN_INDEX_SHARE, index, *params]

    # Run only if some median is to be sorted, and then for all three in one pass.
    sorted_medians = ", ".join(
        f"percentile_cont(0.5) WITHIN GROUP (ORDER BY f.{col}) AS {key}"
        for key, col in MEDIAN_COLUMNS.items()
    )

    sql = f"""
        WITH g AS (
            SELECT f.expert_id,
                   COUNT(*) AS moved,
                   COUNT(*) FILTER (WHERE f.outcome = 'agreed') AS agreed,
                   COUNT(*) FILTER (WHERE f.outcome = 'not_agreed') AS not_agreed,
                   COUNT(*) FILTER (WHERE f.outcome = 'withdrawn') AS withdrawn,
                   AVG(f.seconds_to_agreement) AS to_agreement,
                   {counted}, {sums},
                   COUNT(f.agreement_kept) AS follow_ups,
                   COUNT(*) FILTER (WHERE f.agreement_kept) AS kept
              FROM {table} f
             WHERE {where}
             GROUP BY f.expert_id
        ), total AS (
            SELECT COALESCE(SUM(g.moved), 0)::bigint AS moved,
                   COALESCE(SUM(g.agreed), 0)::bigint AS agreed,
                   COALESCE(SUM(g.not_agreed), 0)::bigint AS not_agreed,
                   COALESCE(SUM(g.withdrawn), 0)::bigint AS withdrawn,
                   {total_counted}, {total_sums},
                   COALESCE(SUM(g.follow_ups), 0)::bigint AS follow_ups,
                   COALESCE(SUM(g.kept), 0)::bigint AS kept
              FROM g
        ), sorted AS (
            SELECT {sorted_medians} FROM {table} f WHERE {where}
        )
        SELECT TRUE AS overall, NULL::bigint AS expert_id, NULL AS display_name,
               NULL AS username, t.moved, t.agreed, t.not_agreed, t.withdrawn,
               {median("to_accept")}, {median("to_hearing")}, {median("to_agreement")},
               {", ".join(f"t.{col}" for col in SUM_COLUMNS)}, t.follow_ups, t.kept
          FROM total t
        UNION ALL
        SELECT FALSE, g.expert_id, u.display_name, u.username,
               g.moved, g.agreed, g.not_agreed, g.withdrawn,
               NULL::float, NULL::float, g.to_agreement::float,
               {expert_sums}, g.follow_ups, g.kept
          FROM g
          LEFT JOIN {User._meta.db_table} u ON u.id = g.expert_id
         WHERE g.expert_id IS NOT NULL
    """  # noqa: S608 - our own table and column names; values are parameters
    with connection.cursor() as cursor:
        cursor.execute(
            sql, [*params, *params, *(p for key in MEDIAN_COLUMNS for p in median_params(key))]
        )
        cols = [c.name for c in cursor.description]
        return [dict(zip(cols, row, strict=True)) for row in cursor.fetchall()]


def _figures_python(scope: Scope) -> list[dict[str, Any]]:
    """The same rows for databases without percentile_cont or GROUPING SETS (SQLite, demo)."""
    rows = list(
        scope.figures().values(
            "expert_id",
            "expert__display_name",
            "expert__username",
            "outcome",
            "seconds_to_accept",
            "seconds_to_hearing",
            "seconds_to_agreement",
            "agreement_kept",
            *SUM_COLUMNS,
        )
    )

    def summary(group: list[dict[str, Any]], *, mean: bool = False) -> dict[str, Any]:
        def med(key: str) -> float | None:
            values = [r[key] for r in group if r[key] is not None]
            if not values:
                return None
            return pystats.mean(values) if mean else pystats.median(values)

        out = {
            "moved": len(group),
            "agreed": sum(r["outcome"] == "agreed" for r in group),
            "not_agreed": sum(r["outcome"] == "not_agreed" for r in group),
            "withdrawn": sum(r["outcome"] == "withdrawn" for r in group),
            "to_accept": med("seconds_to_accept"),
            "to_hearing": med("seconds_to_hearing"),
            "to_agreement": med("seconds_to_agreement"),
            "follow_ups": sum(r["agreement_kept"] is not None for r in group),
            "kept": sum(bool(r["agreement_kept"]) for r in group),
        }
        out.update({col: sum(r[col] for r in group) if group else None for col in SUM_COLUMNS})
        return out

    result = [{"overall": True, "expert_id": None, **summary(rows)}]
    by_expert: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        if row["expert_id"] is not None:
            by_expert.setdefault(row["expert_id"], []).append(row)
    for expert_id, group in by_expert.items():
        result.append(
            {
                "overall": False,
                "expert_id": expert_id,
                "display_name": group[0]["expert__display_name"],
                "username": group[0]["expert__username"],
                **summary(group, mean=True),
            }
        )
    return result


def _figure_rows(scope: Scope) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """(overall row, one row per mediator)."""
    if connection.vendor == "postgresql":
        rows = _figures_postgres(scope)
    else:
        rows = _figures_python(scope)
    overall = next(r for r in rows if r["overall"])
    experts = [r for r in rows if not r["overall"] and r["expert_id"] is not None]
    return overall, experts


def _shape(row: dict[str, Any], *, total: int) -> dict[str, Any]:
    concluded = row["agreed"] + row["not_agreed"]
    return {
        "total": total,
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


def _follow_up_model():
    """The agreements' follow-up of each term (FollowUp), when that module is installed."""
    try:
        return apps.get_model("mediation_room", "FollowUp")
    except LookupError:
        return None


def _performance_from_follow_ups(model, scope: Scope, now: datetime) -> dict[str, Any]:
    """Terms of the agreements that are settled: fulfilled (the parties confirmed it, on the due
    date or before it) ÷ those settled (fulfilled, not fulfilled, or no answer by the due date)."""
    states = model.State
    rows = dict(
        model.objects.filter(agreement__case__in=scope.cases().values("pk"))
        .filter(Q(due_at__lte=now) | Q(state=states.FULFILLED))
        .values_list("state")
        .annotate(n=Count("pk"))
        .order_by()
    )
    settled = sum(rows.get(s, 0) for s in (states.FULFILLED, states.UNFULFILLED, states.UNANSWERED))
    return {
        "due": settled,
        "on_time": rows.get(states.FULFILLED, 0),
        "waiting": rows.get(states.ASKED, 0),
        "source": _("the follow-up of each agreed term on its due date"),
    }


def agreement_performance(
    scope: Scope, overall: dict[str, Any], open_late: dict[str, int], now: datetime
):
    """Agreements fulfilled on time. settings.STATS_AGREEMENT_PERFORMANCE may name a function
    (cases queryset) -> {"due": n, "on_time": n, "source": text}. Otherwise, with the
    agreements module installed, from its follow-up of each term (FollowUp); without it, from
    the case events: an agreement counts as fulfilled on time when its follow-up visit (回访) was
    recorded before the follow-up deadline and not marked unfulfilled; due = follow-ups recorded
    + follow-ups overdue."""
    dotted = settings.STATS_AGREEMENT_PERFORMANCE
    follow_up = _follow_up_model()
    if dotted:
        module, _sep, name = dotted.rpartition(".")
        figures = dict(getattr(importlib.import_module(module), name)(scope.cases()))
    elif follow_up is not None:
        figures = _performance_from_follow_ups(follow_up, scope, now)
    else:
        figures = {
            "due": (overall["follow_ups"] or 0) + open_late.get(Status.AGREED, 0),
            "on_time": overall["kept"] or 0,
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


def satisfaction(scope: Scope) -> dict[str, Any]:
    """Average rating of the mediations by the parties; {"available": False} without ratings."""
    model = _rating_model()
    if model is None:
        return {"available": False, "by_expert": {}}
    ratings = model.objects.filter(case__in=scope.cases().values("pk"))
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


def _on_time(overall: dict[str, Any], open_late: dict[str, int]) -> list[dict[str, Any]]:
    out = []
    for stage in TIMED_STAGES:
        on_time = overall[f"{stage.value}_on_time"] or 0
        late_left = overall[f"{stage.value}_late"] or 0
        late_now = open_late.get(stage.value, 0)
        whole = on_time + late_left + late_now
        out.append(
            {
                "stage": stage.value,
                "label": stage.label,
                "on_time": on_time,
                "late": late_left + late_now,
                "open_late": late_now,
                "rate": _rate(on_time, whole),
            }
        )
    return out


def _breakdowns_postgres(scope: Scope, now: datetime) -> dict[str, list[tuple[Any, int]]]:
    """Cases by status, category, community and month, and open stages past their deadline
    by status: one pass over the scope's cases that hashes each case twice, by (status,
    category, community) and by month, then folds the first into the three breakdowns.
    The month of a case is found by binary search among the local month starts spanning the
    scope (width_bucket) rather than by converting every registration time to local time."""
    try:
        cases_sql, params = (
            scope.cases()
            .values("status", "category", "community_id", "created_at", "stage_deadline")
            .query.sql_with_params()
        )
    except EmptyResultSet:  # a coordinator without communities: nothing to count
        return {"status": [], "category": [], "community": [], "month": [], "late": []}
    tz = settings.TIME_ZONE
    sql = f"""
        WITH edges AS (
            -- the local start of every month from the first registration to the last
            SELECT array_agg(m AT TIME ZONE %s ORDER BY m) AS starts
              FROM (SELECT MIN(s.created_at) AS lo, MAX(s.created_at) AS hi
                      FROM ({cases_sql}) s) b,
                   generate_series(date_trunc('month', b.lo AT TIME ZONE %s),
                                   b.hi AT TIME ZONE %s, interval '1 month') m
        ), g AS (
            SELECT GROUPING(c.status) = 0 AS fine, c.status, c.category, c.community_id,
                   c.month, COUNT(*) AS n, COUNT(*) FILTER (WHERE c.stage_deadline < %s) AS late
              FROM (SELECT c.status, c.category, c.community_id, c.stage_deadline,
                           width_bucket(c.created_at, (SELECT e.starts FROM edges e)) AS month
                      FROM ({cases_sql}) c) c
             GROUP BY GROUPING SETS ((c.status, c.category, c.community_id), (c.month))
        )
        SELECT 'status', g.status, NULL::timestamp, SUM(g.n)::bigint, SUM(g.late)::bigint
          FROM g WHERE g.fine GROUP BY g.status
        UNION ALL
        SELECT 'category', g.category, NULL, SUM(g.n)::bigint, 0
          FROM g WHERE g.fine GROUP BY g.category
        UNION ALL
        SELECT 'community', g.community_id::text, NULL, SUM(g.n)::bigint, 0
          FROM g WHERE g.fine GROUP BY g.community_id
        UNION ALL
        SELECT 'month', NULL, e.starts[g.month] AT TIME ZONE %s, g.n, 0
          FROM g, edges e WHERE NOT g.fine
    """  # noqa: S608 - Django-compiled SQL of our own queryset; values are parameters
    out: dict[str, list[tuple[Any, int]]] = {
        "status": [],
        "category": [],
        "community": [],
        "month": [],
        "late": [],
    }
    with connection.cursor() as cursor:
        cursor.execute(sql, [tz, *params, tz, tz, now, *params, tz])
        for kind, key, month, n, late in cursor.fetchall():
            if kind == "status":
                out["status"].append((key, n))
                out["late"].append((key, late))
            elif kind == "community":
                out["community"].append((int(key), n))
            elif kind == "month":
                out["month"].append((month, n))
            else:
                out[kind].append((key, n))
    return out


def _breakdowns_orm(scope: Scope, now: datetime) -> dict[str, list[tuple[Any, int]]]:
    tz = ZoneInfo(settings.TIME_ZONE)
    cases = scope.cases()
    return {
        "status": list(cases.values_list("status").annotate(n=Count("pk"))),
        "category": list(cases.values_list("category").annotate(n=Count("pk"))),
        "community": list(cases.values_list("community_id").annotate(n=Count("pk"))),
        "month": list(
            cases.annotate(month=TruncMonth("created_at", tzinfo=tz))
            .values_list("month")
            .annotate(n=Count("pk"))
        ),
        "late": list(
            cases.filter(stage_deadline__lt=now).values_list("status").annotate(n=Count("pk"))
        ),
    }


def dashboard(scope: Scope, *, now: datetime | None = None) -> dict[str, Any]:
    """Every figure of the coordinators' dashboard for the scope."""
    now = now or timezone.now()
    if connection.vendor == "postgresql":
        with transaction.atomic(), connection.cursor() as cursor:
            # The breakdowns hash the scope's cases into a few thousand groups; keep them in
            # memory.
            cursor.execute("SET LOCAL work_mem = '64MB'")
            parts = _breakdowns_postgres(scope, now)
            overall, expert_rows = _figure_rows(scope)
    else:
        parts = _breakdowns_orm(scope, now)
        overall, expert_rows = _figure_rows(scope)
    status_counts = dict(parts["status"])
    category_counts = dict(parts["category"])
    open_late = {status: n for status, n in parts["late"] if n}
    names = scope.names or dict(
        Community.objects.filter(pk__in=[c for c, _n in parts["community"]]).values_list(
            "pk", "name"
        )
    )
    sat = satisfaction(scope)
    experts = []
    for row in sorted(expert_rows, key=lambda r: (-r["moved"], r["expert_id"])):
        shaped = _shape(row, total=row["moved"])
        shaped["name"] = row["display_name"] or row["username"]
        shaped["rating"] = sat["by_expert"].get(row["expert_id"])
        experts.append(shaped)
    months = sorted((m.strftime("%Y-%m"), n) for m, n in parts["month"])
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
            {"key": pk, "label": names.get(pk, str(pk)), "n": n}
            for pk, n in sorted(parts["community"], key=lambda r: (-r[1], r[0]))
        ],
        "by_month": [{"key": m, "label": m, "n": n} for m, n in months],
        "facts": _shape(overall, total=sum(status_counts.values())),
        "on_time": _on_time(overall, open_late),
        "performance": agreement_performance(scope, overall, open_late, now),
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
    period = Period()
    if year:
        tz = ZoneInfo(settings.TIME_ZONE)
        period = Period(datetime(year, 1, 1, tzinfo=tz), datetime(year + 1, 1, 1, tzinfo=tz))
    scope = Scope(community_ids=None, period=period)
    overall, _experts = _figure_rows(scope)
    facts = _shape(overall, total=scope.cases().count())
    facts["communities"] = Community.objects.filter(
        pk__in=scope.cases().values("community_id")
    ).count()
    return facts
