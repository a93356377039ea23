"""Benchmark of the coordinators' statistics: loads 100,000 cases with their lifecycle events
into its own PostgreSQL database (COPY, a few seconds), then prints

- the time of the dashboard's queries (statistics.dashboard) and of the whole dashboard page,
  and the number of queries, for a street coordinator (a tenth of the cases) and for a
  coordinator of every street (all the cases);
- the time of the CSV export of all the cases, and the peak Python memory while streaming it,
  next to the same for a tenth of the rows (flat memory = streamed).

Usage:  python bench/stats.py [--cases 100000] [--reload]
        (PostgreSQL at BENCH_PG, default postgres://postgres@127.0.0.1:5432; database BENCH_DB,
        default cb_bench_stats)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics as pystats
import sys
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PG = os.environ.get("BENCH_PG", "postgres://postgres@127.0.0.1:5432").rstrip("/")
DB_NAME = os.environ.get("BENCH_DB", "cb_bench_stats")


def ensure_database() -> None:
    import psycopg

    with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [DB_NAME]).fetchone()
        if not exists:
            conn.execute(f'CREATE DATABASE "{DB_NAME}"')


def setup_django() -> None:
    os.environ["DATABASE_URL"] = f"{PG}/{DB_NAME}"
    os.environ.pop("REDIS_URL", None)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudbench.settings")
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    # the page names its static files from collectstatic's manifest, as in production
    call_command("collectstatic", interactive=False, verbosity=0)


# --- data ------------------------------------------------------------------------------------------------

# Where a case's journey ends, with weights roughly like a platform a few years in.
ENDINGS = [
    ("registered", 3),
    ("declined", 3),
    ("accepted", 3),
    ("matched", 3),
    ("scheduled", 4),
    ("in_session", 1),
    ("agreed", 8),
    ("not_agreed", 3),
    ("withdrawn", 6),
    ("followed_up", 16),
    ("closed", 50),
]
MAIN_PATH = ["registered", "accepted", "matched", "scheduled", "in_session"]


def journey(rng: random.Random, ending: str) -> list[str]:
    if ending == "declined":
        return ["registered", "declined"]
    if ending == "withdrawn":
        return [*MAIN_PATH[: rng.randint(1, 4)], "withdrawn"]
    if ending in MAIN_PATH:
        return MAIN_PATH[: MAIN_PATH.index(ending) + 1]
    outcome = "agreed" if rng.random() < 0.9 else "not_agreed"
    if ending in ("agreed", "not_agreed"):
        return [*MAIN_PATH, ending]
    steps = [*MAIN_PATH, outcome, "followed_up"]
    return steps + (["closed"] if ending == "closed" else [])


def load(n_cases: int) -> None:
    from django.conf import settings
    from django.db import connection, transaction

    from accounts.models import Community, CoordinatorPost, Role, Street, User
    from accounts.services import role_grant
    from mediation_room.lifecycle import add_working_days
    from mediation_room.models import Case, CaseEvent, Category

    rng = random.Random(8)
    days = settings.STAGE_DEADLINE_DAYS
    with transaction.atomic():
        streets = Street.objects.bulk_create(
            [Street(name=f"街道{i}", district="临平区") for i in range(10)]
        )
        communities = Community.objects.bulk_create(
            [Community(name=f"社区{s.pk}-{j}", street=s) for s in streets for j in range(10)]
        )
        people = User.objects.bulk_create(
            [User(username=f"bench{i}", display_name=f"居民{i}") for i in range(2000)]
        )
        experts = people[:100]
        reporters = people[100:]
        street_coordinator = User.objects.create(username="bench-street", display_name="街道")
        CoordinatorPost.objects.create(user=street_coordinator, street=streets[0])
        city = User.objects.create(username="bench-city", display_name="全区")
        for user in (street_coordinator, city):
            role_grant(user=user, role=Role.COORDINATOR)
        CoordinatorPost.objects.bulk_create([CoordinatorPost(user=city, street=s) for s in streets])
    endings = [e for e, _ in ENDINGS]
    weights = [w for _, w in ENDINGS]
    categories = list(Category.values)
    now = datetime.now(UTC)
    start = now - timedelta(days=730)
    case_cols = [
        "id", "tracking_number", "category", "description", "community_id", "reporter_id",
        "status", "status_changed_at", "stage_deadline", "preferred_times", "decline_reason",
        "expert_id", "outcome_note", "created_at", "updated_at",
    ]  # fmt: skip
    event_cols = [
        "case_id", "kind", "from_status", "to_status", "note", "data", "public", "created_at",
    ]  # fmt: skip
    first_id = (Case.objects.order_by("-pk").values_list("pk", flat=True).first() or 0) + 1
    events = 0
    t = time.perf_counter()
    with transaction.atomic(), connection.cursor() as cursor:
        raw = cursor.cursor
        case_rows = []
        event_rows = []
        for i in range(n_cases):
            case_id = first_id + i
            registered = start + timedelta(seconds=rng.randint(0, 730 * 86400))
            steps = journey(rng, rng.choices(endings, weights)[0])
            expert = rng.choice(experts).pk if "matched" in steps else None
            at = registered
            deadline = add_working_days(at, days["registered"])
            event_rows.append((case_id, "registered", "", "registered", "", "{}", True, at))
            for prev, nxt in zip(steps, steps[1:], strict=False):
                at = at + timedelta(hours=rng.expovariate(1 / 40))
                data = {"stage_deadline": deadline.isoformat(), "on_time": at <= deadline}
                event_rows.append(
                    (case_id, "transition", prev, nxt, "", json.dumps(data), True, at)
                )
                deadline = add_working_days(at, days[nxt]) if nxt in days else None
            if at > now:
                at = now
            case_rows.append(
                (
                    case_id, f"LP-B-{case_id:08d}", rng.choice(categories), "bench",
                    rng.choice(communities).pk, rng.choice(reporters).pk, steps[-1], at,
                    deadline, "", "", expert, "", registered, at,
                )
            )  # fmt: skip
            if len(case_rows) >= 10000:
                events += _copy(raw, Case, case_cols, case_rows, CaseEvent, event_cols, event_rows)
                case_rows, event_rows = [], []
        events += _copy(raw, Case, case_cols, case_rows, CaseEvent, event_cols, event_rows)
        cursor.execute(
            "SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)",
            [Case._meta.db_table, first_id + n_cases - 1],
        )
    print(f"loaded {n_cases:,} cases and {events:,} events in {time.perf_counter() - t:.1f} s")
    from mediation_room.supervision.figures import figures_rebuild

    t = time.perf_counter()
    rows = figures_rebuild()
    print(
        f"statistics projection rebuilt from the events: {rows:,} rows in "
        f"{time.perf_counter() - t:.1f} s"
    )
    with connection.cursor() as cursor:
        # What autovacuum does to freshly loaded tables: statistics and the visibility map
        # (index-only scans of the duration indexes skip the table only for visible pages).
        cursor.execute("VACUUM ANALYZE")


def _copy(raw, case_model, case_cols, case_rows, event_model, event_cols, event_rows) -> int:
    with raw.copy(f"COPY {case_model._meta.db_table} ({', '.join(case_cols)}) FROM STDIN") as copy:
        for row in case_rows:
            copy.write_row(row)
    with raw.copy(
        f"COPY {event_model._meta.db_table} ({', '.join(event_cols)}) FROM STDIN"
    ) as copy:
        for row in event_rows:
            copy.write_row(row)
    return len(event_rows)


# --- measurements --------------------------------------------------------------------------------------------


def time_dashboard(user, label: str, repeat: int = 7) -> None:
    from django.db import connection
    from django.test import Client
    from django.test.utils import CaptureQueriesContext

    from mediation_room.supervision import statistics

    n = statistics.coordinator_scope(user).cases().count()
    statistics.dashboard(statistics.coordinator_scope(user))  # warm caches
    backend = _backend_process(connection)
    times, cpu = [], []
    for _ in range(repeat):
        with CaptureQueriesContext(connection) as queries:
            before = _cpu(backend)
            t = time.perf_counter()
            statistics.dashboard(statistics.coordinator_scope(user))
            times.append(time.perf_counter() - t)
            cpu.append(_cpu(backend) - before)
    per_query = sorted(((float(q["time"]), q["sql"][:70]) for q in queries), reverse=True)
    print(
        f"dashboard queries, {label} ({n:,} cases): median {pystats.median(times) * 1000:.0f} ms "
        f"wall (min {min(times) * 1000:.0f} ms), median {pystats.median(cpu) * 1000:.0f} ms CPU "
        f"(PostgreSQL backend + this process), {len(queries)} queries"
    )
    for seconds, sql in per_query[:3]:
        print(f"    {seconds * 1000:6.0f} ms  {sql}")

    client = Client()
    client.force_login(user)
    client.get("/stats/?start=2000-01-01")
    page_times = []
    for _ in range(3):
        with CaptureQueriesContext(connection) as page_queries:
            t = time.perf_counter()
            response = client.get("/stats/?start=2000-01-01")
            page_times.append(time.perf_counter() - t)
        assert response.status_code == 200, response.status_code
    print(
        f"dashboard page (HTTP, rendered), {label}: median "
        f"{pystats.median(page_times) * 1000:.0f} ms, {len(page_queries)} queries"
    )


def _backend_process(connection):
    """The PostgreSQL server process serving our connection, to count the CPU it spends: on a
    shared, busy machine the wall time mostly measures waiting for a core."""
    import psutil

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        return psutil.Process(pid)
    except psutil.Error:
        return None


def _cpu(backend) -> float:
    own = time.process_time()
    if backend is None:
        return own
    times = backend.cpu_times()
    return own + times.user + times.system


def time_export(user) -> None:
    from mediation_room.supervision import exports, statistics

    cases = statistics.coordinator_scope(user).cases()
    total = cases.count()

    t = time.perf_counter()
    size = 0
    for chunk in exports.csv_stream(cases):
        size += len(chunk)
    elapsed = time.perf_counter() - t
    print(
        f"CSV export of {total:,} cases: {elapsed:.2f} s ({total / elapsed:,.0f} rows/s, "
        f"{size / 1e6:.1f} MB of text)"
    )

    tenth = cases.filter(pk__in=cases.order_by("pk").values("pk")[: total // 10])
    for label, qs, rows in (("a tenth", tenth, total // 10), ("all", cases, total)):
        tracemalloc.start()
        first_peak = None
        for i, _chunk in enumerate(exports.csv_stream(qs)):
            if i == 1000:
                first_peak = tracemalloc.get_traced_memory()[1]
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
        print(
            f"CSV export peak Python memory, {label} ({rows:,} rows): {peak / 1e6:.1f} MB "
            f"(after 1,000 rows: {(first_peak or 0) / 1e6:.1f} MB)"
        )


def calibrate() -> None:
    """How busy the machine is, so that the figures below can be read in context."""
    from django.db import connection

    with connection.cursor() as cursor:
        t = time.perf_counter()
        cursor.execute("SELECT count(*) FROM generate_series(1, 1000000)")
        cursor.fetchone()
        spent = time.perf_counter() - t
    load = os.getloadavg()[0]
    print(
        f"machine: {os.cpu_count()} cores, load average {load:.1f}; "
        f"calibration (count a million rows in PostgreSQL): {spent * 1000:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--reload", action="store_true", help="drop and reload the data")
    args = parser.parse_args()
    ensure_database()
    if args.reload:
        import psycopg

        with psycopg.connect(f"{PG}/postgres", autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{DB_NAME}" WITH (FORCE)')
        ensure_database()
    setup_django()
    from accounts.models import User
    from mediation_room.models import Case, CaseFigures

    if not Case.objects.exists():
        load(args.cases)
    elif not CaseFigures.objects.exists():
        from mediation_room.supervision.figures import figures_rebuild

        figures_rebuild()
    print(f"{Case.objects.count():,} cases in {DB_NAME}")
    calibrate()
    time_dashboard(User.objects.get(username="bench-street"), "one street")
    time_dashboard(User.objects.get(username="bench-city"), "every street")
    time_export(User.objects.get(username="bench-city"))


if __name__ == "__main__":
    main()
