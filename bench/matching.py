"""How long ranking the expert pool for one case takes, at 100 and at 10,000 experts.

    python bench/matching.py            # DATABASE_URL defaults to .../cb_bench_matching
    python bench/matching.py --runs 300

Needs PostgreSQL: the database named in DATABASE_URL is dropped, re-created and migrated (its
name must start with cb_bench). Prints the median and p99 time of `rank_candidates` for one
neighbour-dispute case (the heaviest exclusion rules) and the number of SQL queries per ranking.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import time
from datetime import time as clock_time
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/cb_bench_matching")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cloudbench.settings")
os.environ.setdefault("CELERY_EAGER", "1")


def recreate_database(url: str) -> None:
    import psycopg

    parsed = urlparse(url)
    name = parsed.path.lstrip("/")
    if not name.startswith("cb_bench"):
        raise SystemExit(
            f"refusing to drop {name!r}: the bench database name must start with cb_bench"
        )
    admin = parsed._replace(path="/postgres").geturl()
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')


def build_pool(start: int, count: int, communities, rng: random.Random) -> None:
    """`count` experts made in bulk: specialties, communities served, languages, weekly slots."""
    from accounts.models import User
    from experts.matching import Window, week_hours
    from experts.models import AvailabilitySlot, ExpertKind, ExpertProfile, pack_codes
    from mediation_room.models import Category

    users = User.objects.bulk_create(
        User(username=f"bench{n}", phone=f"+86135{n:08d}", display_name=f"专家{n}")
        for n in range(start, start + count)
    )
    kinds = ExpertKind.values
    categories = Category.values
    profiles = ExpertProfile.objects.bulk_create(
        ExpertProfile(
            user=user,
            public_name=f"专家{start + i}",
            kind=rng.choice(kinds),
            specialties=pack_codes(rng.sample(categories, k=rng.randint(1, 3))),
            languages=pack_codes(["普通话"] + (["杭州话"] if rng.random() < 0.3 else [])),
            home_community=rng.choice(communities) if rng.random() < 0.7 else None,
            load_cap=rng.randint(3, 8),
            rating_sum=0,
            rating_count=0,
        )
        for i, user in enumerate(users)
    )
    through = ExpertProfile.communities.through
    links = []
    for p in profiles:
        for c in rng.sample(communities, k=rng.randint(1, 3)):
            links.append(through(expertprofile_id=p.pk, community_id=c.pk))
    through.objects.bulk_create(links)
    slots = []
    for p in profiles:
        for _ in range(rng.randint(1, 4)):
            start_hour = rng.choice([9, 14, 18, 19])
            slots.append(
                AvailabilitySlot(
                    profile=p,
                    weekday=rng.randrange(7),
                    start_time=clock_time(start_hour),
                    end_time=clock_time(start_hour + 2),
                )
            )
    AvailabilitySlot.objects.bulk_create(slots)
    by_profile: dict[int, list] = {}
    for slot in slots:
        by_profile.setdefault(slot.profile_id, []).append(
            Window(slot.weekday, slot.start_time, slot.end_time)
        )
    for p in profiles:
        p.week_hours_lo, p.week_hours_hi = week_hours(by_profile.get(p.pk, []))
    ExpertProfile.objects.bulk_update(profiles, ["week_hours_lo", "week_hours_hi"])
    # Some ratings, some open cases and recent assignments, so every factor has data to read.
    for p in rng.sample(profiles, k=len(profiles) // 2):
        n = rng.randint(1, 20)
        p.rating_count, p.rating_sum = n, n * rng.randint(3, 5)
    ExpertProfile.objects.bulk_update(profiles, ["rating_sum", "rating_count"])


def add_history(profiles, communities, reporter, rng: random.Random, start: int) -> None:
    from django.utils import timezone

    from experts.models import Invitation
    from mediation_room.models import Case

    now = timezone.now()
    busy = rng.sample(profiles, k=len(profiles) // 5)
    cases = Case.objects.bulk_create(
        Case(
            tracking_number=f"BN-{start + i:07d}",
            category="family",
            description="bench",
            community=rng.choice(communities),
            reporter=reporter,
            status="matched",
            status_changed_at=now,
            expert_id=p.user_id,
        )
        for i, p in enumerate(busy)
    )
    Invitation.objects.bulk_create(
        Invitation(
            case=case,
            expert=p,
            state="accepted",
            expires_at=now,
            responded_at=now - timedelta(days=rng.randint(0, 40)),
        )
        for case, p in zip(cases, busy, strict=True)
    )


def backend_cpu_ms() -> float | None:
    """CPU time used so far by this connection's PostgreSQL backend (local server only): what
    one ranking costs the database, whatever else the machine is doing."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    ticks = int(fields[11]) + int(fields[12])  # utime + stime
    return ticks * 1000 / os.sysconf("SC_CLK_TCK")


def measure(case, runs: int) -> tuple[float, float, int, int, float | None, float]:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from experts.matching import rank_candidates

    for _ in range(5):
        rank_candidates(case)
    with CaptureQueriesContext(connection) as captured:
        found = rank_candidates(case)
    queries = len(captured)
    times = []
    server_before = backend_cpu_ms()
    client_before = time.process_time()
    for _ in range(runs):
        reset_queries()
        t0 = time.perf_counter()
        rank_candidates(case)
        times.append((time.perf_counter() - t0) * 1000)
    client_cpu = (time.process_time() - client_before) * 1000 / runs
    server_after = backend_cpu_ms()
    server_cpu = (
        (server_after - server_before) / runs
        if server_before is not None and server_after is not None
        else None
    )
    times.sort()
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    return statistics.median(times), p99, queries, len(found), server_cpu, client_cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--sizes", default="100,10000")
    args = parser.parse_args()
    url = os.environ["DATABASE_URL"]
    if not url.startswith("postgres"):
        raise SystemExit("bench/matching.py needs PostgreSQL (DATABASE_URL=postgres://...)")
    recreate_database(url)

    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    from accounts.models import Community, Street, User
    from experts.models import ExpertProfile
    from mediation_room.models import Case, Party

    call_command("migrate", verbosity=0)
    rng = random.Random(7)
    street = Street.objects.create(name="南苑街道", district="临平区")
    communities = [Community.objects.create(name=f"社区{i}", street=street) for i in range(20)]
    reporter = User.objects.create(username="applicant", phone="+8613700000001")
    respondent = User.objects.create(username="respondent", phone="+8613700000002")
    case = Case.objects.create(
        tracking_number="BN-CASE",
        category="neighbours",
        description="楼上漏水，老人只会说杭州话",
        community=communities[0],
        reporter=reporter,
        status="accepted",
        status_changed_at=timezone.now(),
        preferred_times="工作日晚上或周六上午",
    )
    Party.objects.create(
        case=case, role="applicant", user=reporter, name="王", phone=reporter.phone
    )
    Party.objects.create(
        case=case, role="respondent", user=respondent, name="李", phone=respondent.phone
    )

    print(
        f"rank_candidates for one case, {args.runs} runs each, PostgreSQL {connection.pg_version}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(
        f"{'experts':>8} {'median ms':>10} {'p99 ms':>8} {'queries':>8} {'returned':>9}"
        f" {'db cpu ms':>10} {'py cpu ms':>10}"
    )
    made = 0
    for size in [int(s) for s in args.sizes.split(",")]:
        build_pool(made, size - made, communities, rng)
        new = list(ExpertProfile.objects.filter(pk__gt=0).order_by("pk")[made:size])
        add_history(new, communities, reporter, rng, made)
        made = size
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")
        median, p99, queries, found, server_cpu, client_cpu = measure(case, args.runs)
        db_cpu = f"{server_cpu:>10.2f}" if server_cpu is not None else f"{'n/a':>10}"
        print(
            f"{size:>8} {median:>10.2f} {p99:>8.2f} {queries:>8} {found:>9} {db_cpu}"
            f" {client_cpu:>10.2f}"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("median/p99: wall-clock per ranking; db/py cpu: CPU time per ranking in the")
    print("PostgreSQL backend and in this process (less sensitive to other load on the machine).")


if __name__ == "__main__":
    main()
