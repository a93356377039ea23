"""Residents say where they live; a coordinator of that community confirms it."""

import pytest

from accounts.models import Membership
from tests.factories import CommunityFactory, UserFactory, make_coordinator

pytestmark = pytest.mark.django_db


def test_resident_asks_and_coordinator_confirms(client, community):
    resident = UserFactory()
    client.force_login(resident)
    client.post("/me/community/", {"community": community.pk, "household": "3-2-501"})
    membership = Membership.objects.get(user=resident)
    assert membership.verified_at is None

    coordinator = make_coordinator(community)
    client.force_login(coordinator)
    assert "3-2-501" in client.get("/board/residents/").content.decode()
    client.post("/board/residents/", {"membership": membership.pk, "decision": "approve"})

    membership.refresh_from_db()
    assert membership.verified_by == coordinator and membership.verified_at is not None


def test_coordinator_of_another_street_cannot_confirm(client, community):
    membership = Membership.objects.create(
        user=UserFactory(), community=community, household="1-1-101"
    )
    outsider = make_coordinator(CommunityFactory())
    client.force_login(outsider)
    assert "1-1-101" not in client.get("/board/residents/").content.decode()
    response = client.post(
        "/board/residents/", {"membership": membership.pk, "decision": "approve"}
    )
    assert response.status_code == 404
    membership.refresh_from_db()
    assert membership.verified_at is None


@pytest.mark.parametrize("household", ["", "x" * 61])
def test_bad_household_is_refused(client, community, household):
    client.force_login(UserFactory())
    response = client.post("/me/community/", {"community": community.pk, "household": household})
    assert response.status_code == 200
    assert response.context["form"].errors
    assert not Membership.objects.exists()


def test_forged_membership_id_is_404(client, community):
    client.force_login(make_coordinator(community))
    assert (
        client.post(
            "/board/residents/", {"membership": "999999", "decision": "approve"}
        ).status_code
        == 404
    )
    assert client.post(
        "/board/residents/", {"membership": "abc", "decision": "approve"}
    ).status_code in (400, 404)
