from datetime import time, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from experts import services
from experts.models import AvailabilitySlot, Invitation
from mediation_room.models import Case
from tests.experts.factories import make_profile
from tests.factories import CommunityFactory, UserFactory, advance, make_case


def test_directory_filters_and_shows_each_record(client, community):
    lawyer = make_profile(kind="lawyer", specialties=["unpaid_wages"], serves=[community])
    make_profile(kind="counsellor", specialties=["family"])
    case = make_case(respondent=UserFactory())
    hearing = advance(case, "agreed", expert=lawyer.user)
    assert hearing is not None

    page = client.get(reverse("experts:directory"), {"kind": "lawyer"})
    body = page.content.decode()
    assert page.status_code == 200
    assert lawyer.public_name in body and "100%" in body
    assert (
        client.get(reverse("experts:directory"), {"specialty": "family"})
        .context["page"]
        .paginator.count
        == 1
    )
    assert (
        client.get(reverse("experts:directory"), {"community": community.pk})
        .context["page"]
        .paginator.count
        == 1
    )
    # Filters that make no sense show everyone, never an error.
    assert client.get(reverse("experts:directory"), {"kind": "x' OR 1=1"}).status_code == 200
    detail = client.get(reverse("experts:detail", args=[lawyer.public_id]))
    assert detail.status_code == 200 and lawyer.user.phone not in detail.content.decode()


def test_directory_queries_do_not_grow_with_the_pool(db, client, django_assert_num_queries):
    community = CommunityFactory()
    for _ in range(3):
        make_profile(serves=[community])
    # count, page, communities of the page, figures, the community filter's choices
    with django_assert_num_queries(5):
        client.get(reverse("experts:directory"))
    for _ in range(20):
        make_profile(serves=[community, CommunityFactory()])
    with django_assert_num_queries(5):
        client.get(reverse("experts:directory"))


def test_dashboard_accept_and_decline_without_javascript(client, accepted_case, coordinator):
    expert = make_profile()
    invitation = services.invitation_send(case=accepted_case, actor=coordinator, expert=expert)
    client.force_login(expert.user)

    page = client.get(reverse("experts:dashboard"))
    assert accepted_case.tracking_number in page.content.decode()
    # The invited expert can open the case they are asked about.
    assert client.get(f"/cases/{accepted_case.tracking_number}/").status_code == 200

    response = client.post(reverse("experts:invitation_accept", args=[invitation.pk]))
    assert response.status_code == 302
    assert Case.objects.get(pk=accepted_case.pk).expert_id == expert.user_id


def test_decline_without_a_reason_changes_nothing(client, accepted_case, coordinator):
    expert = make_profile()
    invitation = services.invitation_send(case=accepted_case, actor=coordinator, expert=expert)
    client.force_login(expert.user)
    client.post(reverse("experts:invitation_decline", args=[invitation.pk]), {"reason": ""})
    assert Invitation.objects.get(pk=invitation.pk).state == "pending"
    client.post(reverse("experts:invitation_decline", args=[invitation.pk]), {"reason": "回避"})
    assert Invitation.objects.get(pk=invitation.pk).state == "declined"


def test_forged_invitation_ids_are_not_found(client, accepted_case, coordinator):
    expert, other = make_profile(), make_profile()
    invitation = services.invitation_send(case=accepted_case, actor=coordinator, expert=expert)
    client.force_login(other.user)
    assert (
        client.post(reverse("experts:invitation_accept", args=[invitation.pk])).status_code == 404
    )
    assert client.post(reverse("experts:invitation_accept", args=[987654])).status_code == 404
    assert Invitation.objects.get(pk=invitation.pk).state == "pending"


def test_availability_editing(db, client):
    expert = make_profile()
    client.force_login(expert.user)
    client.post(
        reverse("experts:slot_add"), {"weekday": 2, "start_time": "19:00", "end_time": "21:00"}
    )
    client.post(  # ends before it starts: refused
        reverse("experts:slot_add"), {"weekday": 3, "start_time": "21:00", "end_time": "19:00"}
    )
    slot = AvailabilitySlot.objects.get(profile=expert)
    assert (slot.weekday, slot.start_time) == (2, time(19))
    day = (timezone.localdate() + timedelta(days=3)).isoformat()
    client.post(reverse("experts:exception_add"), {"date": day, "available": "0"})
    assert expert.exceptions.count() == 1
    # Someone else's slot id: nothing removed.
    intruder = make_profile()
    client.force_login(intruder.user)
    client.post(reverse("experts:slot_remove", args=[slot.pk]))
    assert AvailabilitySlot.objects.filter(pk=slot.pk).exists()
    client.force_login(expert.user)
    client.post(reverse("experts:slot_remove", args=[slot.pk]))
    assert not AvailabilitySlot.objects.filter(pk=slot.pk).exists()


def test_non_experts_have_no_dashboard(client, resident):
    client.force_login(resident)
    assert client.get(reverse("experts:dashboard")).status_code == 404


def test_candidates_page_ranks_and_invites(client, accepted_case, coordinator):
    top = make_profile(specialties=[accepted_case.category])
    make_profile()
    client.force_login(coordinator)
    url = reverse("experts:candidates", args=[accepted_case.tracking_number])
    page = client.get(url)
    body = page.content.decode()
    assert page.status_code == 200 and top.public_name in body
    assert [c.profile_id for c in page.context["ranked"]][0] == top.pk

    client.post(reverse("experts:invite", args=[accepted_case.tracking_number]), {"expert": "top"})
    assert Invitation.objects.get(case=accepted_case, state="pending").expert == top


@pytest.mark.parametrize("who", ["resident", "expert", "party"])
def test_candidates_are_for_the_cases_coordinators_only(client, accepted_case, who):
    expert = make_profile()
    user = {
        "resident": UserFactory(),
        "expert": expert.user,
        "party": accepted_case.parties.get(role="applicant").user,
    }[who]
    client.force_login(user)
    url = reverse("experts:candidates", args=[accepted_case.tracking_number])
    assert client.get(url).status_code == 404
    invite = reverse("experts:invite", args=[accepted_case.tracking_number])
    assert client.post(invite, {"expert": expert.public_id}).status_code == 404
    assert not Invitation.objects.exists()


def test_inviting_a_forged_expert_is_a_clear_error(client, accepted_case, coordinator):
    client.force_login(coordinator)
    invite = reverse("experts:invite", args=[accepted_case.tracking_number])
    response = client.post(invite, {"expert": "no-such-id"}, follow=True)
    assert (
        "No such expert" in response.content.decode() or "没有这位专家" in response.content.decode()
    )
    assert not Invitation.objects.exists()
