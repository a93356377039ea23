from datetime import time, timedelta

import pytest
from django.utils import timezone

from accounts.models import Membership
from experts import matching
from experts.matching import Window, parse_preferred_times, rank_candidates
from experts.models import DeclaredConflict, Invitation, pack_codes
from experts.services import (
    InvitationError,
    exclusion_reason,
    invitation_send,
    profile_week_hours_refresh,
)
from mediation_room.models import Case
from tests.experts.factories import make_profile
from tests.factories import CommunityFactory, UserFactory, advance, make_case

EVENING = (time(18, 0), time(21, 30))


def _ids(candidates):
    return [c.profile_id for c in candidates]


def _case(case: Case, **fields) -> Case:
    Case.objects.filter(pk=case.pk).update(**fields)
    case.refresh_from_db()
    return case


# --- preferred times ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("工作日晚上", {Window(d, *EVENING) for d in range(5)}),
        ("周六上午", {Window(5, time(8, 30), time(12, 0))}),
        ("周末", {Window(5, time(8), time(21, 30)), Window(6, time(8), time(21, 30))}),
        ("周一到周三下午", {Window(d, time(13, 30), time(18)) for d in range(3)}),
        ("weekday evenings", {Window(d, *EVENING) for d in range(5)}),
        (
            "工作日晚上或周日下午",
            {Window(d, *EVENING) for d in range(5)} | {Window(6, time(13, 30), time(18))},
        ),
        ("我也说不好", set()),
        ("", set()),
    ],
)
def test_parse_preferred_times(text, expected):
    assert set(parse_preferred_times(text).windows) == expected


def test_parse_anytime_covers_every_day():
    parsed = parse_preferred_times("随时可以")
    assert parsed.anytime
    assert {w.weekday for w in parsed.windows} == set(range(7))


# --- each factor moves the order ----------------------------------------------------------------


def _give(factor: str, profile, case: Case) -> None:
    if factor == "specialty":
        profile.specialties = pack_codes([case.category])
        profile.save(update_fields=["specialties"])
    elif factor == "community":
        profile.communities.add(case.community)
    elif factor == "free":
        profile.slots.create(weekday=5, start_time=time(9), end_time=time(11))
        profile_week_hours_refresh(profile)
    elif factor == "language":
        profile.languages = pack_codes(["普通话", "杭州话"])
        profile.save(update_fields=["languages"])
    elif factor == "rating":
        profile.rating_sum, profile.rating_count = 10, 2
        profile.save(update_fields=["rating_sum", "rating_count"])


def _burden(factor: str, profile) -> None:
    if factor == "load":
        other = make_case(respondent=UserFactory())
        advance(other, "matched", expert=profile.user)
    elif factor == "recent":
        other = make_case(respondent=UserFactory())
        Invitation.objects.create(
            case=other,
            expert=profile,
            state="accepted",
            expires_at=timezone.now(),
            responded_at=timezone.now() - timedelta(days=3),
        )


@pytest.mark.parametrize("factor", ["specialty", "community", "free", "language", "rating"])
def test_each_bonus_lifts_an_expert_above_an_equal_one(accepted_case, factor):
    case = _case(
        accepted_case, preferred_times="周六上午", description="老人只会说杭州话", category="family"
    )
    first, second = make_profile(), make_profile()
    assert _ids(rank_candidates(case)) == [first.pk, second.pk]  # equal: lower id first

    _give(factor, second, case)

    ranked = rank_candidates(case)
    assert _ids(ranked) == [second.pk, first.pk]
    assert ranked[0].score > ranked[1].score
    reason = next(
        r for r in ranked[0].reasons if r.code == factor.replace("community", "community")
    )
    assert reason.points > next(r for r in ranked[1].reasons if r.code == reason.code).points


@pytest.mark.parametrize("factor", ["load", "recent"])
def test_each_burden_lowers_an_expert_below_an_equal_one(accepted_case, factor):
    first, second = make_profile(), make_profile()
    _burden(factor, first)

    ranked = rank_candidates(accepted_case)

    assert _ids(ranked) == [second.pk, first.pk]
    assert ranked[0].score > ranked[1].score


def test_a_full_expert_is_left_out(accepted_case):
    full = make_profile(load_cap=1)
    _burden("load", full)
    assert rank_candidates(accepted_case) == []
    assert exclusion_reason(accepted_case, full)


def test_weights_order_the_factors_as_documented(accepted_case):
    """A specialist beats a local, a local beats someone merely free at the right time."""
    case = _case(accepted_case, preferred_times="周六上午")
    free = make_profile(slots=[(5, time(9), time(12))])
    local = make_profile(serves=[case.community])
    specialist = make_profile(specialties=[case.category])
    assert _ids(rank_candidates(case)) == [specialist.pk, local.pk, free.pk]


def test_sql_score_equals_the_explained_score(accepted_case):
    case = _case(accepted_case, preferred_times="工作日晚上，周末", description="需要杭州话")
    for n in range(12):
        profile = make_profile(
            specialties=[case.category] if n % 2 else ["family"],
            serves=[case.community] if n % 3 == 0 else [],
            languages=["普通话", "杭州话"] if n % 4 == 0 else ["普通话"],
            slots=[(n % 7, time(19), time(21))] if n % 5 else [],
            load_cap=1 + n % 4,
        )
        profile.rating_sum, profile.rating_count = n % 6, 1 if n % 6 else 0
        profile.save(update_fields=["rating_sum", "rating_count"])
        if n % 4 == 1:
            _burden("recent", profile)
    ranked = rank_candidates(case)
    assert len(ranked) == 12
    for candidate in ranked:
        assert candidate.score == matching.score_candidate(candidate.features)[0]
    keys = [(-c.score, c.features.load, c.features.recent, c.profile_id) for c in ranked]
    assert keys == sorted(keys)


def test_ties_are_broken_the_same_way_every_time(accepted_case):
    profiles = [make_profile() for _ in range(6)]
    orders = {tuple(_ids(rank_candidates(accepted_case))) for _ in range(3)}
    assert orders == {tuple(p.pk for p in profiles)}


def test_ranking_takes_one_query_whatever_the_pool(accepted_case, django_assert_num_queries):
    case = _case(accepted_case, preferred_times="周末", description="杭州话")
    for _ in range(3):
        make_profile(specialties=[case.category], slots=[(5, time(9), time(11))])
    with django_assert_num_queries(1):
        small = rank_candidates(case)
    for _ in range(30):
        make_profile(serves=[case.community])
    with django_assert_num_queries(1):
        large = rank_candidates(case)
    assert len(small) == 3 and len(large) == 20


# --- conflicts are exclusions, never penalties -----------------------------------------------------


CONFLICTS = [
    "is_applicant",
    "is_respondent_by_phone",
    "declared_user",
    "declared_phone",
    "neighbour_same_community",
    "neighbour_party_home",
    "declined",
    "lapsed",
]


def _conflict(kind: str, case: Case, coordinator):
    applicant = case.parties.get(role="applicant")
    respondent = case.parties.get(role="respondent")
    if kind == "is_applicant":
        return make_profile(user=applicant.user, specialties=[case.category])
    if kind == "is_respondent_by_phone":
        # The respondent has not signed in yet: only their number is known.
        user = respondent.user
        respondent.user = None
        respondent.save(update_fields=["user"])
        return make_profile(user=user, specialties=[case.category])
    profile = make_profile(specialties=[case.category], serves=[case.community])
    if kind == "declared_user":
        DeclaredConflict.objects.create(profile=profile, user=respondent.user, note="表兄")
    elif kind == "declared_phone":
        DeclaredConflict.objects.create(profile=profile, phone=applicant.phone, note="前雇主")
    elif kind == "neighbour_same_community":
        profile.home_community = case.community
        profile.save(update_fields=["home_community"])
    elif kind == "neighbour_party_home":
        elsewhere = CommunityFactory()
        Membership.objects.create(user=respondent.user, community=elsewhere)
        profile.home_community = elsewhere
        profile.save(update_fields=["home_community"])
    elif kind in ("declined", "lapsed"):
        Invitation.objects.create(
            case=case, expert=profile, state=kind, expires_at=timezone.now(), reason="忙"
        )
    return profile


@pytest.mark.parametrize("kind", CONFLICTS)
def test_conflicted_experts_never_appear_and_cannot_be_invited(community, coordinator, kind):
    respondent = UserFactory()
    case = make_case(community=community, respondent=respondent, category="neighbours")
    advance(case, "accepted", coordinator=coordinator)
    bystander = make_profile()
    conflicted = _conflict(kind, case, coordinator)
    case.refresh_from_db()

    assert _ids(rank_candidates(case)) == [bystander.pk]
    assert exclusion_reason(case, conflicted)
    with pytest.raises(InvitationError) as info:
        invitation_send(case=case, actor=coordinator, expert=conflicted)
    assert info.value.code == "excluded"
    assert not case.expert_invitations.filter(state="pending").exists()


def test_home_community_matters_only_in_neighbour_disputes(accepted_case):
    assert accepted_case.category != "neighbours"
    profile = make_profile(home_community=accepted_case.community)
    assert _ids(rank_candidates(accepted_case)) == [profile.pk]
    assert exclusion_reason(accepted_case, profile) is None


def test_week_hours_fold_windows_into_hour_bits():
    monday_evening = matching.week_hours([Window(0, time(18, 30), time(20, 0))])
    assert monday_evening == ((1 << 10) | (1 << 11), 0)  # 18:00 and 19:00 on Monday
    sunday_morning = matching.week_hours([Window(6, time(8), time(9))])
    assert sunday_morning == (0, 1 << (2 * 14))
    lo, hi = matching.week_hours(parse_preferred_times("随时").windows)
    assert lo == (1 << 56) - 1 and hi == (1 << 42) - 1


def test_slot_changes_reach_the_ranking(accepted_case):
    from experts import services

    case = _case(accepted_case, preferred_times="周三晚上")
    idle, keen = make_profile(), make_profile()
    slot = services.availability_slot_add(
        actor=keen.user, weekday=2, start_time=time(19), end_time=time(21)
    )
    assert _ids(rank_candidates(case)) == [keen.pk, idle.pk]
    services.availability_slot_remove(actor=keen.user, slot_id=slot.pk)
    assert _ids(rank_candidates(case)) == [idle.pk, keen.pk]


def test_switched_off_accounts_are_never_proposed(accepted_case):
    gone = make_profile(specialties=[accepted_case.category])
    stays = make_profile()
    gone.user.is_active = False
    gone.user.save(update_fields=["is_active"])
    assert _ids(rank_candidates(accepted_case)) == [stays.pk]
    assert exclusion_reason(accepted_case, gone)
