"""Every lifecycle transition: allowed, refused from the wrong states and for the wrong roles,
audited, atomic."""

from datetime import timedelta

import pytest
from django.db import IntegrityError
from django.utils import timezone

from mediation_room import services
from mediation_room.errors import NotPermitted, TransitionNotAllowed
from mediation_room.lifecycle import TRANSITIONS, add_working_days
from mediation_room.models import Case, CaseEvent, Hearing, Status
from tests.factories import UserFactory, advance, make_case, make_coordinator, make_expert

pytestmark = pytest.mark.django_db


def _last_event(case: Case) -> CaseEvent:
    return case.events.order_by("-created_at", "-pk").first()


def test_register_creates_case_parties_consents_and_event(community, resident):
    case = make_case(community=community, applicant=resident, consents={"video": True})

    assert case.status == Status.REGISTERED
    assert case.tracking_number.startswith(f"LP-{timezone.localtime().year}-")
    assert {p.role for p in case.parties.all()} == {"applicant", "respondent"}
    applicant = case.parties.get(role="applicant")
    assert {c.kind: c.granted for c in applicant.consents.all()} == {
        "video": True,
        "livestream": False,
        "recording": False,
    }
    event = _last_event(case)
    assert (event.kind, event.to_status, event.actor) == ("registered", "registered", resident)
    assert case.stage_deadline > timezone.now()


def test_tracking_numbers_are_sequential_per_year(community):
    first = make_case(community=community)
    second = make_case(community=community)
    assert int(second.tracking_number[-6:]) == int(first.tracking_number[-6:]) + 1


def test_accept_by_coordinator_writes_event(community, coordinator):
    case = make_case(community=community)
    services.case_accept(case=case, actor=coordinator, note="材料齐全")
    case.refresh_from_db()
    assert case.status == Status.ACCEPTED
    event = _last_event(case)
    assert (event.from_status, event.to_status, event.actor, event.note) == (
        "registered",
        "accepted",
        coordinator,
        "材料齐全",
    )


@pytest.mark.parametrize(
    "who", ["applicant", "respondent", "stranger", "other_coordinator", "expert"]
)
def test_accept_refused_for_wrong_roles(community, who):
    respondent = UserFactory()
    case = make_case(community=community, respondent=respondent)
    actor = {
        "applicant": case.reporter,
        "respondent": respondent,
        "stranger": UserFactory(),
        "other_coordinator": make_coordinator(make_case().community),
        "expert": make_expert(),
    }[who]
    events_before = case.events.count()
    with pytest.raises(NotPermitted):
        services.case_accept(case=case, actor=actor)
    case.refresh_from_db()
    assert case.status == Status.REGISTERED
    assert case.events.count() == events_before


def test_community_level_coordinator_is_limited_to_their_community(community):
    local = make_coordinator(community, street_level=False)
    sibling = make_case(community=make_case(community=community).community)
    neighbour_community = type(community).objects.create(name="隔壁社区", street=community.street)
    other = make_case(community=neighbour_community)
    services.case_accept(case=sibling, actor=local)
    with pytest.raises(NotPermitted):
        services.case_accept(case=other, actor=local)


def test_decline_records_reason_for_applicant(community, coordinator):
    case = make_case(community=community)
    services.case_decline(case=case, actor=coordinator, reason="已进入诉讼程序")
    case.refresh_from_db()
    assert case.status == Status.DECLINED
    assert case.decline_reason == "已进入诉讼程序"
    assert _last_event(case).note == "已进入诉讼程序"


@pytest.mark.parametrize(
    "status",
    ["accepted", "matched", "scheduled", "in_session", "agreed"],
)
def test_accept_refused_from_every_other_state(community, coordinator, status):
    case = make_case(community=community, respondent=UserFactory())
    advance(case, status, coordinator=coordinator)
    with pytest.raises(TransitionNotAllowed):
        services.case_accept(case=case, actor=coordinator)
    case.refresh_from_db()
    assert case.status == status


def test_whole_lifecycle_to_closed_writes_one_event_per_transition(community, coordinator):
    case = make_case(community=community, respondent=UserFactory())
    advance(case, "agreed", coordinator=coordinator)
    services.case_follow_up(case=case, actor=coordinator, note="已履行")
    services.case_close(case=case, actor=coordinator)
    case.refresh_from_db()
    transitions = list(case.events.exclude(from_status="").values_list("from_status", "to_status"))
    assert transitions == [
        ("registered", "accepted"),
        ("accepted", "matched"),
        ("matched", "scheduled"),
        ("scheduled", "in_session"),
        ("in_session", "agreed"),
        ("agreed", "followed_up"),
        ("followed_up", "closed"),
    ]
    assert case.status == Status.CLOSED
    assert case.stage_deadline is None
    assert all((f, t) in TRANSITIONS for f, t in transitions)


def test_only_the_mediator_or_a_coordinator_starts_the_session(community, coordinator):
    respondent = UserFactory()
    case = make_case(community=community, respondent=respondent)
    hearing = advance(case, "scheduled", coordinator=coordinator)
    for intruder in (case.reporter, respondent, make_expert()):
        with pytest.raises(NotPermitted):
            services.session_start(hearing=hearing, actor=intruder)
    services.session_start(hearing=hearing, actor=case.expert)
    hearing.refresh_from_db()
    assert hearing.state == Hearing.State.LIVE
    case.refresh_from_db()
    assert case.status == Status.IN_SESSION


def test_expert_match_cannot_be_a_party(community, coordinator):
    respondent = UserFactory()
    case = make_case(community=community, respondent=respondent)
    services.case_accept(case=case, actor=coordinator)
    with pytest.raises(NotPermitted):
        services.case_match(case=case, expert=respondent, actor=coordinator)
    case.refresh_from_db()
    assert case.status == Status.ACCEPTED and case.expert is None


def test_withdraw_only_by_applicant_and_cancels_the_hearing(community, coordinator):
    respondent = UserFactory()
    case = make_case(community=community, respondent=respondent)
    hearing = advance(case, "scheduled", coordinator=coordinator)
    with pytest.raises(NotPermitted):
        services.case_withdraw(case=case, actor=respondent)
    services.case_withdraw(case=case, actor=case.reporter, reason="已和解")
    case.refresh_from_db()
    hearing.refresh_from_db()
    assert case.status == Status.WITHDRAWN
    assert hearing.state == Hearing.State.CANCELLED


def test_withdraw_refused_after_conclusion(community, coordinator):
    case = make_case(community=community, respondent=UserFactory())
    advance(case, "agreed", coordinator=coordinator)
    with pytest.raises(TransitionNotAllowed):
        services.case_withdraw(case=case, actor=case.reporter)


def test_close_refused_before_follow_up(community, coordinator):
    case = make_case(community=community, respondent=UserFactory())
    advance(case, "agreed", coordinator=coordinator)
    with pytest.raises(TransitionNotAllowed):
        services.case_close(case=case, actor=coordinator)


def test_failed_hearing_write_rolls_back_the_transition(community, coordinator):
    """A hearing that cannot be stored leaves the case matched with no new event."""
    case = make_case(community=community, respondent=UserFactory())
    advance(case, "matched", coordinator=coordinator)
    Hearing.objects.create(  # an open hearing already exists: the unique constraint will refuse
        case=case,
        starts_at=timezone.now(),
        ends_at=timezone.now() + timedelta(hours=1),
    )
    events_before = case.events.count()
    start = timezone.now() + timedelta(days=1)
    with pytest.raises(IntegrityError):
        services.hearing_schedule(
            case=case, actor=coordinator, starts_at=start, ends_at=start + timedelta(hours=1)
        )
    case.refresh_from_db()
    assert case.status == Status.MATCHED
    assert case.events.count() == events_before


def test_consent_given_and_withdrawn_by_the_party_only(community):
    respondent = UserFactory()
    case = make_case(community=community, respondent=respondent)
    party = case.parties.get(role="respondent")
    services.consent_set(party=party, actor=respondent, kind="livestream", granted=False)
    assert not services.consents_all_granted(case, "livestream")
    with pytest.raises(NotPermitted):
        services.consent_set(party=party, actor=case.reporter, kind="livestream", granted=True)
    services.consent_set(party=party, actor=respondent, kind="livestream", granted=True)
    assert services.consents_all_granted(case, "livestream")
    kinds = list(case.events.filter(kind__startswith="consent_").values_list("kind", flat=True))
    assert kinds[-2:] == ["consent_withdrawn", "consent_granted"]


def test_consent_can_be_withdrawn_in_session_but_not_granted(community, coordinator):
    respondent = UserFactory()
    case = make_case(community=community, respondent=respondent)
    advance(case, "in_session", coordinator=coordinator)
    party = case.parties.get(role="respondent")
    services.consent_set(party=party, actor=respondent, kind="livestream", granted=False)
    with pytest.raises(TransitionNotAllowed):
        services.consent_set(party=party, actor=respondent, kind="livestream", granted=True)


def test_working_day_deadlines_skip_the_weekend():
    friday = timezone.make_aware(timezone.datetime(2026, 11, 27, 10, 0))
    assert add_working_days(friday, 1).weekday() == 0  # Monday
    assert add_working_days(friday, 3).day == 2  # Wednesday 2 December
