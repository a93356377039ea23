import threading
import time as clock
from datetime import time, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import IntegrityError, close_old_connections, connection, transaction
from django.utils import timezone

from accounts.models import Notification
from experts import services
from experts.models import Invitation
from experts.services import InvitationError
from mediation_room.errors import NotPermitted
from mediation_room.models import Case, CaseEvent, Hearing
from mediation_room.selectors import access_case_for_user, case_roles_for_user
from tests.experts.factories import make_profile
from tests.factories import UserFactory, advance, make_case, make_coordinator


def _kinds(case):
    return list(CaseEvent.objects.filter(case=case).values_list("kind", flat=True))


def test_coordinator_invites_the_top_candidate_and_the_expert_is_told(
    accepted_case, coordinator, django_capture_on_commit_callbacks
):
    make_profile()
    best = make_profile(specialties=[accepted_case.category])

    with django_capture_on_commit_callbacks(execute=True):
        invitation = services.invitation_send(case=accepted_case, actor=coordinator)

    assert invitation.expert == best and invitation.state == "pending" and invitation.rank == 1
    assert invitation.expires_at - timezone.now() > timedelta(minutes=119)
    assert "invitation_sent" in _kinds(accepted_case)
    channels = set(
        Notification.objects.filter(user=best.user, kind="expert_invitation").values_list(
            "channel", flat=True
        )
    )
    assert channels == {"sms", "in_app"}
    # The invited expert may now read the case they are asked about, and only that.
    assert "invited_expert" in case_roles_for_user(accepted_case, best.user)
    assert access_case_for_user(best.user, accepted_case.tracking_number)[1] == "invited_expert"


def test_accept_matches_the_case_and_schedules_a_hearing_that_suits_everyone(
    accepted_case, coordinator
):
    Case.objects.filter(pk=accepted_case.pk).update(preferred_times="周六上午")
    expert = make_profile(slots=[(5, time(10), time(12)), (2, time(19), time(21))])
    invitation = services.invitation_send(case=accepted_case, actor=coordinator, expert=expert)

    result = services.invitation_accept(invitation=invitation, actor=expert.user)

    case = Case.objects.get(pk=accepted_case.pk)
    assert case.status == "scheduled" and case.expert_id == expert.user_id
    assert result.fit == "both"
    local = timezone.localtime(result.hearing.starts_at)
    assert local.weekday() == 5 and time(10) <= local.time() <= time(11)
    assert {"invitation_accepted", "hearing_time_chosen"} <= set(_kinds(case))
    # Every party and the mediator get the time and the join link.
    texts = Notification.objects.filter(kind="hearing_scheduled", channel="sms")
    assert texts.count() == 3
    assert all(f"/room/{result.hearing.public_id}/" in n.body for n in texts)


def test_hearing_avoids_the_experts_days_away(accepted_case, coordinator):
    expert = make_profile(slots=[(d, time(9), time(17)) for d in range(7)])
    today = timezone.localdate()
    for offset in range(0, 4):
        services.availability_exception_add(
            actor=expert.user, day=today + timedelta(days=offset), available=False
        )
    invitation = services.invitation_send(case=accepted_case, actor=coordinator, expert=expert)
    result = services.invitation_accept(invitation=invitation, actor=expert.user)
    assert timezone.localtime(result.hearing.starts_at).date() == today + timedelta(days=4)


def test_decline_needs_a_reason_and_tells_the_coordinator(accepted_case, coordinator):
    expert = make_profile()
    invitation = services.invitation_send(case=accepted_case, actor=coordinator, expert=expert)

    with pytest.raises(ValidationError) as info:
        services.invitation_decline(invitation=invitation, actor=expert.user, reason="  ")
    assert "reason" in info.value.message_dict
    services.invitation_decline(invitation=invitation, actor=expert.user, reason="出差两周")

    invitation.refresh_from_db()
    assert invitation.state == "declined" and invitation.reason == "出差两周"
    assert Notification.objects.filter(user=coordinator, kind="expert_invitation_declined").exists()
    assert "invitation_declined" in _kinds(accepted_case)
    # Declined this case: never proposed for it again.
    with pytest.raises(InvitationError):
        services.invitation_send(case=accepted_case, actor=coordinator, expert=expert)


def test_a_declined_automatic_invitation_moves_on_to_the_next(accepted_case, coordinator):
    first = make_profile(specialties=[accepted_case.category])
    second = make_profile()
    invitation = services.invitation_send(case=accepted_case, actor=coordinator)
    Invitation.objects.filter(pk=invitation.pk).update(invited_by=None)
    services.invitation_decline(invitation=invitation, actor=first.user, reason="不熟悉")
    pending = Invitation.objects.get(case=accepted_case, state="pending")
    assert pending.expert == second and pending.invited_by is None


@pytest.mark.parametrize("who", ["resident", "other_expert", "party"])
def test_only_the_invited_expert_may_answer(accepted_case, coordinator, who):
    expert = make_profile()
    invitation = services.invitation_send(case=accepted_case, actor=coordinator, expert=expert)
    actor = {
        "resident": UserFactory(),
        "other_expert": make_profile().user,
        "party": accepted_case.parties.get(role="applicant").user,
    }[who]
    with pytest.raises(NotPermitted):
        services.invitation_accept(invitation=invitation, actor=actor)
    with pytest.raises(NotPermitted):
        services.invitation_decline(invitation=invitation, actor=actor, reason="x")
    invitation.refresh_from_db()
    assert invitation.state == "pending"
    assert Case.objects.get(pk=accepted_case.pk).expert_id is None


def test_only_a_coordinator_of_the_community_may_invite(accepted_case):
    expert = make_profile()
    outsider = make_coordinator(make_case().community)
    for actor in (UserFactory(), expert.user, outsider):
        with pytest.raises(NotPermitted):
            services.invitation_send(case=accepted_case, actor=actor, expert=expert)
    assert not Invitation.objects.exists()


def test_one_pending_invitation_at_a_time(accepted_case, coordinator):
    a, b = make_profile(), make_profile()
    services.invitation_send(case=accepted_case, actor=coordinator, expert=a)
    with pytest.raises(InvitationError) as info:
        services.invitation_send(case=accepted_case, actor=coordinator, expert=b)
    assert info.value.code == "pending_exists"
    with pytest.raises(IntegrityError), transaction.atomic():
        Invitation.objects.create(
            case=accepted_case, expert=b, expires_at=timezone.now() + timedelta(hours=1)
        )


def test_the_database_refuses_two_accepted_experts(accepted_case):
    a, b = make_profile(), make_profile()
    Invitation.objects.create(
        case=accepted_case, expert=a, state="accepted", expires_at=timezone.now()
    )
    with pytest.raises(IntegrityError), transaction.atomic():
        Invitation.objects.create(
            case=accepted_case, expert=b, state="accepted", expires_at=timezone.now()
        )


def test_only_accepted_cases_can_be_offered(community, coordinator):
    case = make_case(community=community, respondent=UserFactory())
    expert = make_profile()
    with pytest.raises(InvitationError):
        services.invitation_send(case=case, actor=coordinator, expert=expert)
    advance(case, "matched", coordinator=coordinator)
    with pytest.raises(InvitationError):
        services.invitation_send(case=case, actor=coordinator, expert=expert)


def test_cancel_frees_the_case_for_another_invitation(accepted_case, coordinator):
    a, b = make_profile(), make_profile()
    invitation = services.invitation_send(case=accepted_case, actor=coordinator, expert=a)
    with pytest.raises(NotPermitted):
        services.invitation_cancel(invitation=invitation, actor=a.user)
    services.invitation_cancel(invitation=invitation, actor=coordinator, reason="改派")
    services.invitation_send(case=accepted_case, actor=coordinator, expert=b)
    with pytest.raises(InvitationError):
        services.invitation_accept(invitation=invitation, actor=a.user)


def test_lapse_is_idempotent_and_invites_the_next_once(accepted_case, coordinator):
    first = make_profile(specialties=[accepted_case.category])
    second = make_profile()
    invitation = services.invitation_send(case=accepted_case, actor=coordinator)
    assert services.invitation_lapse(invitation_id=invitation.pk) == "not_due"

    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now())
    assert services.invitation_lapse(invitation_id=invitation.pk) == "lapsed_next_invited"
    assert services.invitation_lapse(invitation_id=invitation.pk) == "already_lapsed"
    assert services.invitation_lapse(invitation_id=999_999) == "missing"

    states = dict(Invitation.objects.values_list("expert_id", "state"))
    assert states == {first.pk: "lapsed", second.pk: "pending"}
    assert _kinds(accepted_case).count("invitation_lapsed") == 1
    with pytest.raises(InvitationError) as info:
        services.invitation_accept(invitation=invitation, actor=first.user)
    assert info.value.code == "already_answered"


def test_lapse_with_nobody_left_tells_the_coordinators(accepted_case, coordinator):
    only = make_profile()
    invitation = services.invitation_send(case=accepted_case, actor=coordinator, expert=only)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now())
    assert services.invitations_lapse_due() == 1
    assert "invitation_no_candidate" in _kinds(accepted_case)
    assert Notification.objects.filter(user=coordinator, kind="expert_no_candidate").exists()


def _accepted_cases(community, n: int) -> list[Case]:
    """n accepted cases made straight in the database: the flow under test starts at matching."""
    reporter = UserFactory()
    now = timezone.now()
    return Case.objects.bulk_create(
        Case(
            tracking_number=f"LP-2026-9{i:05d}",
            category="unpaid_wages",
            description="拖欠工资",
            community=community,
            reporter=reporter,
            status="accepted",
            status_changed_at=now,
        )
        for i in range(n)
    )


def test_load_spreads_over_fifty_similar_cases(community, coordinator):
    caps = [5, 8, 10, 12, 15]
    pool = [make_profile(load_cap=cap, specialties=["unpaid_wages"]) for cap in caps]
    *cases, extra = _accepted_cases(community, 51)
    order = []
    for case in cases:
        invitation = services.invitation_send(case=case, actor=coordinator)
        services.invitation_accept(invitation=invitation, actor=invitation.expert.user)
        order.append(invitation.expert_id)
    loads = {p.pk: order.count(p.pk) for p in pool}
    assert loads == {p.pk: p.load_cap for p in pool}  # every seat used, none above its cap
    assert len(set(order[:5])) == 5  # the first five cases go to five different experts
    assert len(set(order[5:10])) >= 4  # and the next ones keep spreading
    with pytest.raises(InvitationError) as info:
        services.invitation_send(case=extra, actor=coordinator)
    assert info.value.code == "no_candidate"


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_accepts_exactly_one_wins(community):
    coordinator = make_coordinator(community)
    case = make_case(community=community, respondent=UserFactory())
    advance(case, "accepted", coordinator=coordinator)
    expert = make_profile()
    invitation = services.invitation_send(case=case, actor=coordinator, expert=expert)
    barrier = threading.Barrier(2)
    outcomes: list[str] = []

    def accept():
        try:
            barrier.wait()
            services.invitation_accept(invitation=invitation, actor=expert.user)
            outcomes.append("won")
        except InvitationError as exc:
            outcomes.append(exc.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=accept) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    close_old_connections()

    assert sorted(outcomes) == ["already_answered", "won"]
    assert Invitation.objects.filter(case=case, state="accepted").count() == 1
    assert Case.objects.get(pk=case.pk).expert_id == expert.user_id
    assert Hearing.objects.filter(case=case).count() <= 1


@pytest.mark.worker
def test_lapse_runs_through_a_real_worker_and_invites_the_next_once(celery_worker_real):
    community = make_case().community
    coordinator = make_coordinator(community)
    case = make_case(community=community, respondent=UserFactory())
    advance(case, "accepted", coordinator=coordinator)
    first = make_profile(specialties=[case.category])
    second = make_profile()
    invitation = services.invitation_send(
        case=case, actor=coordinator, ttl=timedelta(seconds=1)
    )  # committed: the worker gets the lapse task due in a second
    from experts.tasks import lapse_invitation

    lapse_invitation.apply_async(args=[invitation.pk], countdown=2)  # a duplicate delivery

    deadline = clock.monotonic() + 30
    while clock.monotonic() < deadline:
        if Invitation.objects.filter(case=case, state="pending", expert=second).exists():
            break
        clock.sleep(0.2)
    clock.sleep(3)  # let the duplicate run too

    states = dict(Invitation.objects.filter(case=case).values_list("expert_id", "state"))
    assert states == {first.pk: "lapsed", second.pk: "pending"}
    assert CaseEvent.objects.filter(case=case, kind="invitation_sent").count() == 2
    assert CaseEvent.objects.filter(case=case, kind="invitation_lapsed").count() == 1
