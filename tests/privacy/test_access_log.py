"""Every route that serves a case's file writes an access-log row; the parties see the staff's
opens of their case and nobody else's; coordinators review the log of their cases."""

import pytest
from django.test import Client
from django.urls import reverse

from privacy.models import AccessLog
from tests.security.world import build_world

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(media):
    return build_world(media.MEDIA_ROOT)


def _client(user) -> Client:
    client = Client(REMOTE_ADDR="198.51.100.23")
    client.force_login(user)
    return client


def _read(response) -> bytes:
    if getattr(response, "streaming", False):
        return b"".join(response.streaming_content)
    return response.content


def file_routes(w):
    case = w.case
    return {
        "evidence": reverse(
            "streaming:evidence_file",
            kwargs={"public_id": w.hearing.public_id, "evidence_id": w.evidence.public_id},
        ),
        "recording": reverse(
            "streaming:recording_file",
            kwargs={"public_id": w.hearing.public_id, "recording_id": w.recording.public_id},
        ),
        "agreement_pdf": reverse("mediation_room:agreement_pdf", args=[case.tracking_number]),
        "replay": reverse("privacy:hearing_replay", args=[w.hearing.public_id]),
        "case_page": reverse("frontend:case_detail", args=[case.tracking_number]),
    }


@pytest.mark.parametrize("kind", ["evidence", "recording", "agreement_pdf", "replay", "case_page"])
def test_every_file_route_and_the_case_page_write_one_row_per_staff_open(world, kind):
    url = file_routes(world)[kind]
    expert = world.users["expert"]

    response = _client(expert).get(url)
    _read(response)

    assert response.status_code == 200
    row = AccessLog.objects.get(kind=kind)
    assert row.actor == expert and row.role == "expert" and row.case == world.case
    assert row.ip == "198.51.100.23"


def test_a_party_opening_a_file_is_logged_but_their_own_case_page_is_not(world):
    routes = file_routes(world)
    party = _client(world.users["party"])
    _read(party.get(routes["evidence"]))
    _read(party.get(routes["case_page"]))

    assert list(AccessLog.objects.values_list("kind", "role")) == [("evidence", "applicant")]


def test_the_judicial_bundle_is_logged_as_an_agreement_open(world):
    url = reverse("mediation_room:agreement_bundle", args=[world.case.tracking_number])
    _read(_client(world.users["coord"]).get(url))
    assert AccessLog.objects.filter(kind="agreement_pdf", role="coordinator").count() == 1


def test_a_refused_open_writes_nothing(world):
    routes = file_routes(world)
    for kind in ("evidence", "recording", "agreement_pdf", "replay"):
        for outsider in ("o_expert", "o_party", "viewer", "moderator"):
            assert _client(world.users[outsider]).get(routes[kind]).status_code == 404
    assert not AccessLog.objects.exists()


def test_the_parties_see_the_staffs_opens_of_their_case_and_nobody_elses(world):
    routes = file_routes(world)
    _read(_client(world.users["expert"]).get(routes["recording"]))
    _read(_client(world.users["coord"]).get(routes["agreement_pdf"]))
    _read(_client(world.users["party"]).get(routes["evidence"]))  # a party: not listed
    expert_name = world.users["expert"].display_name
    coord_name = world.users["coord"].display_name

    page = _client(world.users["party"]).get(
        reverse("privacy:case_access", args=[world.case.tracking_number])
    )
    body = page.content.decode()
    assert page.status_code == 200
    assert expert_name in body and coord_name in body
    assert len(page.context["page"].object_list) == 2
    assert {r.role for r in page.context["page"].object_list} == {"expert", "coordinator"}

    # the other case's party sees nothing of case A, neither on their page nor on A's
    other = _client(world.users["o_party"])
    assert (
        other.get(reverse("privacy:case_access", args=[world.case.tracking_number])).status_code
        == 404
    )
    theirs = other.get(reverse("privacy:case_access", args=[world.case_b.tracking_number]))
    assert theirs.status_code == 200 and not theirs.context["page"].object_list
    assert expert_name not in theirs.content.decode()


def test_coordinators_review_the_log_of_their_cases_with_filters(world):
    routes = file_routes(world)
    _read(_client(world.users["expert"]).get(routes["recording"]))
    _read(_client(world.users["expert"]).get(routes["evidence"]))
    _read(_client(world.users["party"]).get(routes["evidence"]))
    url = reverse("privacy:access_log")

    everything = _client(world.users["coord"]).get(url)
    assert everything.status_code == 200
    assert len(everything.context["page"].object_list) == 3
    staff_evidence = _client(world.users["coord"]).get(
        url, {"kind": "evidence", "staff_only": "on"}
    )
    rows = list(staff_evidence.context["page"].object_list)
    assert [(r.kind, r.role) for r in rows] == [("evidence", "expert")]
    assert "198.51.100.23" in staff_evidence.content.decode()
    # a coordinator of another street sees none of it
    assert not _client(world.users["o_coord"]).get(url).context["page"].object_list
    assert _client(world.users["party"]).get(url).status_code == 404


def test_a_range_request_continuing_a_viewing_is_not_logged_again(world):
    url = file_routes(world)["recording"]
    expert = _client(world.users["expert"])
    _read(expert.get(url))
    _read(expert.get(url, HTTP_RANGE="bytes=10-"))
    assert AccessLog.objects.filter(kind="recording").count() == 1


def test_a_private_hearings_replay_plays_its_recording_and_the_parties_see_who_opened_it(world):
    routes = file_routes(world)
    coord = world.users["coord"]
    page = _client(coord).get(routes["replay"])
    assert page.status_code == 200
    body = page.content.decode()
    # the player asks the logged, ranged recording route for the sealed file
    assert routes["recording"] in body and world.recording.sha256 in body
    row = AccessLog.objects.get(kind="replay")
    assert (row.actor, row.role, row.ref) == (coord, "coordinator", world.hearing.public_id)

    # a party opening the replay is logged too, but is not "staff" on the access page
    _read(_client(world.users["party"]).get(routes["replay"]))
    seen = _client(world.users["party"]).get(
        reverse("privacy:case_access", args=[world.case.tracking_number])
    )
    rows = list(seen.context["page"].object_list)
    assert [(r.kind, r.role) for r in rows] == [("replay", "coordinator")]
    assert coord.display_name in seen.content.decode()
    assert "Replay of a private hearing" in seen.content.decode() or "回放" in seen.content.decode()
    # the other case's party sees nothing of it
    theirs = _client(world.users["o_party"]).get(
        reverse("privacy:case_access", args=[world.case_b.tracking_number])
    )
    assert not theirs.context["page"].object_list


def test_a_replay_page_of_a_hearing_without_recordings_logs_nothing(world):
    world.recording.delete()
    page = _client(world.users["expert"]).get(file_routes(world)["replay"])
    assert page.status_code == 200
    assert not AccessLog.objects.filter(kind="replay").exists()
