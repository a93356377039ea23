"""How long ranking the expert pool for one case takes, at 100 and at 10,000 experts.

    python bench/matching.py            # DATABASE_URL defaults to .../cb_bench_matching
    python bench/matching.py --runs 300

Needs PostgreSQL: the database named in DATABASE_URL is dropped, re-created and migrated (its
name must start with cb_bench). The pool carries a history (open cases, pending invitations, up to
eight concluded cases per expert with their declined and lapsed invitations). Prints the median
and p99 time of `rank_candidates` for one neighbour-dispute case (the heaviest exclusion rules)
and for a mix of cases of every category, and the number of SQL queries per ranking.
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
    """What a pool that has worked for a while leaves behind: one expert in five holds an open
    case (taken within the last 40 days), a few are waiting to answer an invitation, and every
    expert has a record of concluded cases (up to two years back) with the declined and lapsed
    invitations that went with them. The ranking must not slow down as this history grows."""
    from django.utils import timezone

    from experts.models import Invitation
    from mediation_room.models import Case, Category

    now = timezone.now()
    categories = Category.values
    serial = iter(range(start * 20, start * 20 + 10**9))

    def new_case(status: str, expert=None, when=now) -> Case:
        return Case(
            tracking_number=f"BN-{next(serial):08d}",
            category=rng.choice(categories),
            description="bench",
            community=rng.choice(communities),
            reporter=reporter,
            status=status,
            status_changed_at=when,
            expert_id=expert.user_id if expert else None,
        )

    busy = rng.sample(profiles, k=len(profiles) // 5)
    cases = Case.objects.bulk_create(new_case("matched", p) for p in busy)
    invitations = [
        Invitation(
            case=case,
            expert=p,
            state="accepted",
            expires_at=now,
            responded_at=now - timedelta(days=rng.randint(0, 40)),
        )
        for case, p in zip(cases, busy, strict=True)
    ]
    waiting = rng.sample(profiles, k=max(1, len(profiles) // 40))
    cases = Case.objects.bulk_create(new_case("accepted") for _ in waiting)
    invitations += [
        Invitation(case=case, expert=p, state="pending", expires_at=now + timedelta(hours=2))
        for case, p in zip(cases, waiting, strict=True)
    ]
    past = []
    for p in profiles:
        for _ in range(rng.randint(0, 8)):
            when = now - timedelta(days=rng.randint(41, 730))
            past.append(
                (p, when, new_case(rng.choice(["closed", "agreed", "not_agreed"]), p, when))
            )
    cases = Case.objects.bulk_create(c for _p, _w, c in past)
    for case, (p, when, _c) in zip(cases, past, strict=True):
        invitations.append(
            Invitation(case=case, expert=p, state="accepted", expires_at=when, responded_at=when)
        )
        for other in rng.sample(profiles, k=rng.choice([0, 0, 1, 2])):
            if other is not p:
                invitations.append(
                    Invitation(
                        case=case,
                        expert=other,
                        state=rng.choice(["declined", "lapsed"]),
                        expires_at=when,
                        responded_at=when,
                    )
                )
    Invitation.objects.bulk_create(invitations, batch_size=5000)


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


def measure(cases, runs: int) -> tuple[float, float, set, set, float | None, float]:
    """Rank the cases in turn, `runs` times in all."""
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    from experts.matching import rank_candidates

    for case in cases[:5]:
        rank_candidates(case)
    queries, found = set(), set()
    for case in cases:
        with CaptureQueriesContext(connection) as captured:
            found.add(len(rank_candidates(case)))
        queries.add(len(captured))
    times = []
    server_before = backend_cpu_ms()
    client_before = time.process_time()
    for run in range(runs):
        case = cases[run % len(cases)]
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
    return statistics.median(times), p99, queries, found, server_cpu, client_cpu


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
    from mediation_room.models import Case, Category, Party

    call_command("migrate", verbosity=0)
    rng = random.Random(7)
    street = Street.objects.create(name="南苑街道", district="临平区")
    communities = [Community.objects.create(name=f"社区{i}", street=street) for i in range(20)]
    reporter = User.objects.create(username="applicant", phone="+8613700000001")
    respondent = User.objects.create(username="respondent", phone="+8613700000002")

    def accepted_case(number, category, community, description, preferred_times, parties):
        case = Case.objects.create(
            tracking_number=number,
            category=category,
            description=description,
            community=community,
            reporter=parties[0],
            status="accepted",
            status_changed_at=timezone.now(),
            preferred_times=preferred_times,
        )
        for role, user in zip(["applicant", "respondent"], parties, strict=True):
            Party.objects.create(
                case=case, role=role, user=user, name=user.username[:2], phone=user.phone
            )
        return case

    # The heaviest exclusion rules: a neighbour dispute, with a dialect and two time windows.
    case = accepted_case(
        "BN-CASE",
        "neighbours",
        communities[0],
        "楼上漏水，老人只会说杭州话",
        "工作日晚上或周六上午",
        [reporter, respondent],
    )
    # And a spread of ordinary ones: every category, communities, times and languages vary.
    times = ["工作日晚上", "周末", "随时", "", "周三下午", "我也说不好", "周一到周五上午"]
    mixed = [case]
    for n in range(13):
        parties = [
            User.objects.create(username=f"party{n}{side}", phone=f"+861370010{n:02d}0{side}")
            for side in (1, 2)
        ]
        mixed.append(
            accepted_case(
                f"BN-MIX{n:02d}",
                Category.values[n % len(Category.values)],
                communities[(n * 7) % len(communities)],
                "需要会说杭州话的调解员" if n % 3 == 0 else "bench",
                times[n % len(times)],
                parties,
            )
        )

    print(
        f"rank_candidates, {args.runs} runs per row, PostgreSQL {connection.pg_version}; neighbour:"
        f" the one neighbour dispute; mixed: {len(mixed)} cases of every category in turn"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs")
    print(
        f"{'experts':>8} {'cases':>9} {'median ms':>10} {'p99 ms':>8} {'queries':>8} {'returned':>9}"
        f" {'db cpu ms':>10} {'py cpu ms':>10}"
    )
    made = 0
    for size in [int(s) for s in args.sizes.split(",")]:
        build_pool(made, size - made, communities, rng)
        new = list(ExpertProfile.objects.filter(pk__gt=0).order_by("pk")[made:size])
        add_history(new, communities, reporter, rng, made)
        made = size
        with connection.cursor() as cursor:
            # What autovacuum does to a live database; the bulk loads above leave dead rows.
            cursor.execute("VACUUM ANALYZE")
        for label, cases in (("neighbour", [case]), ("mixed", mixed)):
            median, p99, queries, found, server_cpu, client_cpu = measure(cases, args.runs)
            db_cpu = f"{server_cpu:>10.2f}" if server_cpu is not None else f"{'n/a':>10}"
            print(
                f"{size:>8} {label:>9} {median:>10.2f} {p99:>8.2f}"
                f" {'/'.join(map(str, sorted(queries))):>8}"
                f" {'/'.join(map(str, sorted(found))):>9} {db_cpu} {client_cpu:>10.2f}"
            )
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print("median/p99: wall-clock per ranking; db/py cpu: CPU time per ranking in the")
    print("PostgreSQL backend and in this process (less sensitive to other load on the machine).")


if __name__ == "__main__":
    main()
