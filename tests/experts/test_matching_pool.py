"""The ranking query against its definition, written out plainly in Python, on random pools.

`rank_candidates` takes shortcuts to stay fast on a large pool (it scores the most promising
experts first and skips the rest once they cannot reach the list). Whatever shortcut it takes, its
answer must be the one this brute-force definition gives: every expert scored, the conflicted and
the full left out, sorted by score, lower load, fewer recent assignments, then id."""

from __future__ import annotations

import random
from datetime import time, timedelta
from itertools import product

import pytest
from django.utils import timezone

from accounts.models import Membership, User
from experts import matching
from experts.matching import Features, Window, parse_preferred_times, rank_candidates
from experts.models import AvailabilitySlot, DeclaredConflict, ExpertProfile, Invitation, pack_codes
from experts.services import profile_week_hours_refresh
from mediation_room.models import Case, Category, Party, Status
from tests.experts.factories import make_profile
from tests.factories import CommunityFactory, UserFactory, make_case

NOW = timezone.now()


def reference_ranking(case: Case, *, languages=None, only=None) -> list[tuple]:
    """(profile, score, features) of every eligible expert, best first, computed one by one."""
    wanted = matching.languages_mentioned(case) if languages is None else list(languages)
    windows = parse_preferred_times(case.preferred_times).windows
    case_lo, case_hi = matching.week_hours(windows)
    parties = list(Party.objects.filter(case=case).values_list("user_id", "phone"))
    party_users = {u for u, _p in parties if u}
    party_phones = {p for _u, p in parties}
    homes = {case.community_id} | set(
        Membership.objects.filter(user_id__in=party_users).values_list("community_id", flat=True)
    )
    since = NOW - timedelta(days=matching.RECENT_DAYS)
    rows = []
    for profile in ExpertProfile.objects.select_related("user").order_by("pk"):
        if only is not None and profile.pk not in only:
            continue
        if not profile.active:
            continue
        if profile.user_id in party_users or profile.user.phone in party_phones:
            continue
        declared = profile.conflicts.all()
        if any(c.user_id in party_users or c.phone in party_phones for c in declared):
            continue
        if case.category == Category.NEIGHBOURS and profile.home_community_id in homes:
            continue
        asked = case.expert_invitations.filter(expert=profile)
        if asked.filter(state__in=matching.EXCLUDING_STATES).exists():
            continue
        load = (
            Case.objects.filter(
                expert_id=profile.user_id, status__in=matching.ACTIVE_STATUSES
            ).count()
            + profile.invitations.filter(state="pending").count()
        )
        if load >= profile.load_cap:
            continue
        recent = profile.invitations.filter(state="accepted", responded_at__gte=since).count()
        lo, hi = matching.week_hours(
            Window(s.weekday, s.start_time, s.end_time) for s in profile.slots.all()
        )
        features = Features(
            specialty=case.category in profile.specialty_list,
            serves_community=profile.communities.filter(pk=case.community_id).exists(),
            free=bool(lo & case_lo or hi & case_hi) if windows else None,
            language=any(w in profile.language_list for w in wanted) if wanted else None,
            rating_sum=profile.rating_sum,
            rating_count=profile.rating_count,
            load=load,
            load_cap=profile.load_cap,
            recent=recent,
        )
        score = matching.score_candidate(features)[0]
        rows.append((profile, score, features))
    rows.sort(key=lambda r: (-r[1], r[2].load, r[2].recent, r[0].pk))
    return rows


def best(rows: list[tuple], limit: int) -> list[tuple]:
    """The first `limit` of the reference ranking; switched-off accounts are dropped from a
    slightly longer list (as the query does)."""
    kept = [r for r in rows[: limit + matching.INACTIVE_SLACK] if r[0].user.is_active]
    return [(p.pk, score, features) for p, score, features in kept[:limit]]


def build_pool(rng: random.Random, case: Case, size: int, keen: float) -> None:
    """A pool where every factor, exclusion and tie occurs. The case's own category and community
    are common; a `keen` share of the pool has every bonus (specialist, serves the community,
    speaks 杭州话, free on weekday evenings), so the list fills from them and the rest of the pool
    can be skipped."""
    communities = [case.community, *(CommunityFactory() for _ in range(3))]
    parties = list(case.parties.all())
    others = [c for c in Category.values if c != case.category]
    for n in range(size):
        is_keen = rng.random() < keen
        specialties = rng.sample(others, k=rng.randint(0, 2))
        if is_keen or rng.random() < 0.45:
            specialties.append(case.category)
        serves = rng.sample(communities, k=rng.randint(0, 2))
        profile = make_profile(
            specialties=specialties,
            serves=[*serves, case.community] if is_keen else serves,
            languages=["普通话"] + (["杭州话"] if is_keen or rng.random() < 0.4 else []),
            load_cap=rng.randint(1, 4),
            home_community=rng.choice([None, *communities]),
            active=rng.random() > 0.05,
        )
        AvailabilitySlot.objects.bulk_create(
            AvailabilitySlot(
                profile=profile,
                weekday=rng.randrange(7),
                start_time=time(h),
                end_time=time(h + rng.choice([1, 2, 3])),
            )
            for h in rng.sample([8, 9, 10, 13, 14, 18, 19], k=rng.randint(0, 3))
        )
        if is_keen:
            profile.slots.create(weekday=rng.randrange(5), start_time=time(19), end_time=time(21))
        profile_week_hours_refresh(profile)
        if rng.random() < 0.7:
            count = rng.randint(1, 6)
            profile.rating_count, profile.rating_sum = count, rng.randint(count, 5 * count)
            profile.save(update_fields=["rating_count", "rating_sum"])
        if rng.random() < 0.04:
            User.objects.filter(pk=profile.user_id).update(is_active=False)
        roll = rng.random()
        if roll < 0.04:
            DeclaredConflict.objects.create(profile=profile, user_id=rng.choice(parties).user_id)
        elif roll < 0.08:
            DeclaredConflict.objects.create(profile=profile, phone=rng.choice(parties).phone)
        elif roll < 0.16:
            Invitation.objects.create(
                case=case,
                expert=profile,
                state=rng.choice(["declined", "lapsed", "cancelled"]),
                expires_at=NOW,
            )
        # Work elsewhere: open and closed cases, waiting invitations, recent and old assignments.
        for _ in range(rng.choice([0, 0, 1, 1, 2, 3])):
            other = Case.objects.create(
                tracking_number=f"R-{n}-{rng.randrange(10**9)}",
                category=rng.choice(Category.values),
                description="x",
                community=rng.choice(communities),
                reporter=case.reporter,
                status=rng.choice(
                    [Status.MATCHED, Status.SCHEDULED, Status.IN_SESSION, Status.CLOSED]
                ),
                status_changed_at=NOW,
                expert_id=profile.user_id,
            )
            Invitation.objects.create(
                case=other,
                expert=profile,
                state="accepted",
                expires_at=NOW,
                responded_at=NOW - timedelta(days=rng.choice([1, 10, 29, 31, 90])),
            )
        if rng.random() < 0.15:
            waiting = Case.objects.create(
                tracking_number=f"W-{n}-{rng.randrange(10**9)}",
                category=case.category,
                description="x",
                community=case.community,
                reporter=case.reporter,
                status=Status.ACCEPTED,
                status_changed_at=NOW,
            )
            Invitation.objects.create(
                case=waiting, expert=profile, state="pending", expires_at=NOW + timedelta(hours=2)
            )


def _ranked(case: Case, **kwargs) -> list[tuple]:
    return [(c.profile_id, c.score, c.features) for c in rank_candidates(case, now=NOW, **kwargs)]


CASES = [
    # (seed, category, preferred times, description, keen share of the pool)
    (1, "neighbours", "工作日晚上或周六上午", "老人只会说杭州话", 0.4),
    (2, "family", "", "夫妻吵架", 0.0),
    (3, "unpaid_wages", "随时", "需要杭州话", 0.25),
    (4, "property", "我也说不好", "物业费", 0.0),
    (5, "consumer", "周末", "bench", 0.3),
]


@pytest.mark.parametrize(("seed", "category", "times", "description", "keen"), CASES)
def test_ranking_equals_its_definition_on_a_random_pool(
    community, coordinator, seed, category, times, description, keen
):
    rng = random.Random(seed)
    respondent = UserFactory()
    case = make_case(community=community, respondent=respondent, category=category)
    Case.objects.filter(pk=case.pk).update(
        status=Status.ACCEPTED, preferred_times=times, description=description
    )
    case.refresh_from_db()
    Membership.objects.create(user=respondent, community=CommunityFactory())
    build_pool(rng, case, size=90, keen=keen)
    ids = list(ExpertProfile.objects.values_list("pk", flat=True))

    rows = reference_ranking(case)
    # Every length of list: each moves the cut-off score the shortcuts work from.
    for limit in range(1, 41):
        assert _ranked(case, limit=limit) == best(rows, limit), limit
    assert _ranked(case, limit=60) == best(rows, 60)
    assert _ranked(case, limit=5, languages=[]) == best(reference_ranking(case, languages=[]), 5)
    subset = set(rng.sample(ids, k=30))
    assert _ranked(case, limit=4, only_profile_ids=subset) == best(
        reference_ranking(case, only=subset), 4
    )
    # The same after the pool changes under it.
    for profile in ExpertProfile.objects.order_by("?")[:15]:
        profile.specialties = pack_codes([category])
        profile.save(update_fields=["specialties"])
    rows = reference_ranking(case)
    for limit in (1, 8, 25):
        assert _ranked(case, limit=limit) == best(rows, limit), limit


def _recent_assignments(profile, count: int, case: Case) -> None:
    for n in range(count):
        done = Case.objects.create(
            tracking_number=f"D-{profile.pk}-{n}",
            category=case.category,
            description="x",
            community=case.community,
            reporter=case.reporter,
            status=Status.CLOSED,
            status_changed_at=NOW,
            expert_id=profile.user_id,
        )
        Invitation.objects.create(
            case=done,
            expert=profile,
            state="accepted",
            expires_at=NOW,
            responded_at=NOW - timedelta(days=2),
        )


def test_an_expert_of_a_later_tier_tying_the_cut_off_still_wins_the_tie(accepted_case):
    """Eleven local specialists (enough for a list of one plus the spare rows) all score exactly
    what a specialist from elsewhere can at best; the latter has fewer recent assignments, so the
    tie is theirs. Skipping a tier or an expert on a bound that merely equals the cut-off would
    lose them."""
    case = accepted_case
    assert not parse_preferred_times(case.preferred_times).windows
    assert not matching.languages_mentioned(case)
    for _ in range(1 + matching.INACTIVE_SLACK):
        local = make_profile(specialties=[case.category], serves=[case.community])
        local.rating_sum, local.rating_count = 11, 4  # 11 points
        local.save(update_fields=["rating_sum", "rating_count"])
        _recent_assignments(local, 2, case)  # -16 points
    elsewhere = make_profile(specialties=[case.category])
    elsewhere.rating_sum, elsewhere.rating_count = 5, 1  # 20 points, the best there is
    elsewhere.save(update_fields=["rating_sum", "rating_count"])

    ranked = rank_candidates(case, limit=1, now=NOW)

    assert [c.profile_id for c in ranked] == [elsewhere.pk]
    assert ranked[0].score == 40 + 25 + 11 - 16 == 40 + 20
    assert ranked[0].score == matching.best_possible_score("other specialists", offers=(0, 0))
    assert _ranked(case, limit=12) == best(reference_ranking(case), 12)


def test_tiers_share_out_every_expert_and_bound_their_scores():
    """Each combination of bonuses is in exactly one tier, and nobody in a tier can score more
    than the tier's best possible score, whatever their rating, load and recent assignments."""
    for offers in [(f, lang) for f in (False, True) for lang in (False, True)]:
        for specialty, serves, free, language in product((False, True), repeat=4):
            if (free and not offers[0]) or (language and not offers[1]):
                continue
            bonuses = {"specialty": specialty, "serves": serves, "free": free, "language": language}
            tiers = [t for t in matching.TIERS if matching.in_tier(t, **bonuses, offers=offers)]
            assert len(tiers) == 1
            bound = matching.best_possible_score(tiers[0], offers=offers)
            for rating_count, rating_sum, load, cap, recent in product(
                (0, 1, 3), (0, 3, 15), (0, 2), (1, 3), (0, 5)
            ):
                if rating_sum > 5 * rating_count or load >= cap:
                    continue
                features = Features(
                    specialty=specialty,
                    serves_community=serves,
                    free=free if offers[0] else None,
                    language=language if offers[1] else None,
                    rating_sum=rating_sum,
                    rating_count=rating_count,
                    load=load,
                    load_cap=cap,
                    recent=recent,
                )
                assert matching.score_candidate(features)[0] <= bound
