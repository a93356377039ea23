import hashlib

import pytest
from django.core.exceptions import PermissionDenied

from accounts.models import Membership, Notification
from mediation_room.models import CaseEvent
from tests.factories import MembershipFactory, UserFactory
from voting import selectors
from voting.errors import VotingError
from voting.models import Panel, PanelVolunteer
from voting.services import bench_panel


def _volunteers(community, n, household_prefix="9-9-"):
    out = []
    for i in range(n):
        membership = MembershipFactory(community=community, household=f"{household_prefix}{i:03d}")
        out.append(
            bench_panel.volunteer_set(user=membership.user, community_id=community.pk, active=True)
        )
    return out


def test_draw_is_reproducible_from_the_published_seed(live_case, community, client):
    case, coordinator = live_case["case"], live_case["coordinator"]
    _volunteers(community, 20)
    panel = bench_panel.panel_commit(case=case, actor=coordinator, size=9)
    # Before the draw: the commitment and the frozen list are public, the seed is not.
    page = client.get(f"/panel/{panel.public_id}/verify/").content.decode()
    assert panel.commitment in page and panel.seed not in page
    bench_panel.panel_draw(panel=panel, actor=coordinator)
    panel.refresh_from_db()
    assert hashlib.sha256(panel.seed.encode()).hexdigest() == panel.commitment
    keys = sorted(
        (hashlib.sha256(f"{panel.seed}:{code}".encode()).hexdigest(), code)
        for code in panel.eligible_codes
    )
    assert panel.drawn_codes == [code for _key, code in keys[:9]]
    assert panel.panelists.count() == 9
    page = client.get(f"/panel/{panel.public_id}/verify/").content.decode()
    assert panel.seed in page and "✔" in page and "✘" not in page
    # Names never appear on the public page.
    for panelist in panel.panelists.select_related("user"):
        assert panelist.user.display_name not in page and panelist.user.phone not in page
    assert CaseEvent.objects.filter(case=case, kind="panel_committed", public=True).exists()
    assert Notification.objects.filter(kind="panel_drawn", channel="in_app").count() == 9


def test_conflicts_are_excluded(live_case, community):
    case, coordinator = live_case["case"], live_case["coordinator"]
    applicant = case.parties.get(role="applicant").user
    respondent = case.parties.get(role="respondent").user
    # The parties live in 1-1-101 and 2-2-202; their housemates volunteer too.
    Membership.objects.create(
        user=applicant, community=community, household="1-1-101", verified_at=case.created_at
    )
    Membership.objects.create(
        user=respondent, community=community, household="2-2-202", verified_at=case.created_at
    )
    housemate = MembershipFactory(community=community, household="1-1-101").user
    respondent_housemate = MembershipFactory(community=community, household="2-2-202").user
    conflicted = [applicant, respondent, housemate, respondent_housemate]
    for user in conflicted:
        bench_panel.volunteer_set(user=user, community_id=community.pk, active=True)
    MembershipFactory(user=live_case["expert"], community=community, household="5-5-505")
    bench_panel.volunteer_set(user=live_case["expert"], community_id=community.pk, active=True)
    clean = _volunteers(community, 7)
    eligible = selectors.eligible_volunteers(case)
    assert {v.user_id for v in eligible} == {v.user_id for v in clean}
    panel = bench_panel.panel_commit(case=case, actor=coordinator, size=7)
    conflicted_codes = set(
        PanelVolunteer.objects.filter(user__in=[*conflicted, live_case["expert"]]).values_list(
            "code", flat=True
        )
    )
    assert not conflicted_codes & set(panel.eligible_codes)


def test_too_few_volunteers_gets_a_clear_message(live_case, community):
    _volunteers(community, 5)
    with pytest.raises(VotingError) as refused:
        bench_panel.panel_commit(case=live_case["case"], actor=live_case["coordinator"], size=7)
    assert refused.value.code == "too_few"
    assert "5" in refused.value.message and "7" in refused.value.message
    assert not Panel.objects.exists()


def test_only_verified_residents_volunteer_and_only_coordinators_draw(live_case, community):
    unverified = MembershipFactory(community=community, verified_at=None).user
    with pytest.raises(PermissionDenied):
        bench_panel.volunteer_set(user=unverified, community_id=community.pk, active=True)
    _volunteers(community, 8)
    with pytest.raises(PermissionDenied):
        bench_panel.panel_commit(case=live_case["case"], actor=live_case["expert"], size=7)


def test_evaluations_make_a_summary_on_the_case_without_names(live_case, community, client):
    case, coordinator = live_case["case"], live_case["coordinator"]
    _volunteers(community, 7)
    panel = bench_panel.panel_draw(
        panel=bench_panel.panel_commit(case=case, actor=coordinator, size=7), actor=coordinator
    )
    verdicts = ["fair"] * 4 + ["mostly_fair"] * 2 + ["unfair"]
    for panelist, verdict in zip(panel.panelists.order_by("position"), verdicts, strict=True):
        bench_panel.panel_evaluate(
            panel=panel, user=panelist.user, verdict=verdict, reason="方案兼顾双方利益"
        )
    with pytest.raises(VotingError):
        bench_panel.panel_evaluate(
            panel=panel, user=panel.panelists.first().user, verdict="fair", reason="再说一次"
        )
    with pytest.raises(PermissionDenied):
        bench_panel.panel_evaluate(
            panel=panel, user=UserFactory(), verdict="fair", reason="我不是评议员"
        )
    event = CaseEvent.objects.get(case=case, kind="panel_summary")
    assert event.data["counts"] == {"fair": 4, "mostly_fair": 2, "unfair": 1}
    assert event.public
    client.force_login(coordinator)
    page = client.get(f"/cases/{case.tracking_number}/").content.decode()
    assert "方案兼顾双方利益" in page
    for panelist in panel.panelists.select_related("user"):
        assert panelist.user.display_name not in page
