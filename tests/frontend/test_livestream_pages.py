import pytest
from django.templatetags.static import static
from django.urls import reverse

from mediation_room.errors import NotPermitted
from mediation_room.models import CaseEvent
from streaming.broadcast.selectors import broadcast_facts
from streaming.broadcast.services import broadcast_pause
from tests.factories import MembershipFactory, UserFactory, advance, make_case

pytestmark = pytest.mark.django_db


def hearing_for(*, livestream: bool = True, to: str = "in_session", community=None):
    case = make_case(
        community=community,
        respondent=UserFactory(),
        respondent_consents={"video": True, "livestream": livestream, "recording": False},
    )
    return advance(case, to)


def test_home_lists_public_sessions_live_and_upcoming_but_not_private_ones(
    client, community, django_assert_max_num_queries
):
    live = hearing_for(community=community)
    upcoming = hearing_for(community=community, to="scheduled")
    private = hearing_for(community=community, livestream=False)

    with django_assert_max_num_queries(8):
        response = client.get(reverse("frontend:home"))

    page = response.content.decode()
    assert response.status_code == 200
    assert reverse("frontend:watch", args=[live.public_id]) in page
    assert reverse("frontend:watch", args=[private.public_id]) not in page
    assert "劳资纠纷 · " + community.name in page
    assert len(response.context["upcoming_rows"]) == 1
    assert response.context["upcoming_rows"][0]["hearing"] == upcoming
    # never a party's name on the public page
    assert "李四" not in page


def test_home_shows_a_resident_their_own_communities_first(client, community):
    elsewhere = hearing_for()
    mine = hearing_for(community=community)
    resident = UserFactory()
    MembershipFactory(user=resident, community=community)
    client.force_login(resident)

    rows = client.get(reverse("frontend:home")).context["live_rows"]

    assert [r["hearing"] for r in rows] == [mine]
    assert elsewhere not in [r["hearing"] for r in rows]


def test_watch_page_needs_no_sign_in_for_a_public_session_and_hides_a_private_one(client):
    public = hearing_for()
    private = hearing_for(livestream=False)

    ok = client.get(reverse("frontend:watch", args=[public.public_id]))
    hidden = client.get(reverse("frontend:watch", args=[private.public_id]))

    assert ok.status_code == 200
    page = ok.content.decode()
    assert f'data-public-id="{public.public_id}"' in page
    assert f"/media/hls/{public.public_id}/index.m3u8" in page
    assert static("vendor/hls.min.js") in page
    assert hidden.status_code == 404


def test_hls_files_are_served_with_cache_headers_for_public_sessions_only(
    client, settings, tmp_path
):
    settings.BROADCAST_HLS_ROOT = tmp_path
    public = hearing_for()
    private = hearing_for(livestream=False)
    for hearing in (public, private):
        (tmp_path / hearing.public_id).mkdir()
        (tmp_path / hearing.public_id / "live.m3u8").write_text("#EXTM3U\n")
        (tmp_path / hearing.public_id / "segment_00000.ts").write_bytes(b"\x47" * 188)

    playlist = client.get(f"/media/hls/{public.public_id}/live.m3u8")
    segment = client.get(f"/media/hls/{public.public_id}/segment_00000.ts")

    assert playlist.status_code == 200
    assert playlist["Content-Type"] == "application/vnd.apple.mpegurl"
    assert playlist["Cache-Control"] == "no-cache, max-age=1"
    assert segment["Cache-Control"] == "public, max-age=86400, immutable"
    assert client.get(f"/media/hls/{private.public_id}/live.m3u8").status_code == 404
    assert client.get(f"/media/hls/{public.public_id}/..%2Fsecret.ts").status_code == 404
    assert client.get(f"/media/hls/{public.public_id}/segment_99999.ts").status_code == 404


def test_only_the_mediator_pauses_the_livestream_and_each_change_is_a_case_event():
    hearing = hearing_for()
    case = hearing.case
    party_user = case.parties.get(role="applicant").user

    with pytest.raises(NotPermitted):
        broadcast_pause(hearing=hearing, actor=party_user, paused=True)
    broadcast_pause(hearing=hearing, actor=case.expert, paused=True)
    broadcast_pause(hearing=hearing, actor=case.expert, paused=True)
    paused = broadcast_facts(hearing.public_id).paused
    broadcast_pause(hearing=hearing, actor=case.expert, paused=False)

    kinds = list(
        CaseEvent.objects.filter(case=case, kind__startswith="broadcast_").values_list(
            "kind", flat=True
        )
    )
    assert paused is True
    assert broadcast_facts(hearing.public_id).paused is False
    assert kinds == ["broadcast_paused", "broadcast_resumed"]


def test_members_see_the_on_air_indicator_and_the_mediator_can_pause_from_the_case_page(client):
    hearing = hearing_for()
    case = hearing.case
    applicant = case.parties.get(role="applicant").user
    detail = reverse("frontend:case_detail", args=[case.tracking_number])
    pause = reverse("frontend:watch_pause", args=[hearing.public_id])

    client.force_login(applicant)
    party_page = client.get(detail).content.decode()
    refused = client.post(pause, {"paused": "1"}, follow=True)
    client.force_login(case.expert)
    expert_page = client.get(detail).content.decode()
    client.post(pause, {"paused": "1"})

    assert f'data-on-air="{hearing.public_id}"' in party_page
    assert pause not in party_page
    assert pause in expert_page
    assert refused.status_code == 200
    assert list(
        CaseEvent.objects.filter(case=case, kind__startswith="broadcast_").values_list(
            "kind", "actor"
        )
    ) == [("broadcast_paused", case.expert.pk)]


def test_the_mediator_starts_the_session_from_the_case_page_and_a_party_cannot(client):
    hearing = hearing_for(to="scheduled")
    case = hearing.case
    applicant = case.parties.get(role="applicant").user
    detail = reverse("frontend:case_detail", args=[case.tracking_number])
    start = reverse("frontend:hearing_start", args=[hearing.public_id])

    client.force_login(applicant)
    party_page = client.get(detail).content.decode()
    refused = client.post(start, follow=True)
    case.refresh_from_db()
    status_after_refusal = case.status
    client.force_login(case.expert)
    expert_page = client.get(detail).content.decode()
    started = client.post(start, follow=True)

    case.refresh_from_db()
    hearing.refresh_from_db()
    assert start not in party_page
    assert start in expert_page
    assert status_after_refusal == "scheduled"
    assert "您无权对本案件做这项操作。" in refused.content.decode()
    assert started.status_code == 200
    assert (case.status, hearing.state) == ("in_session", "live")
    assert CaseEvent.objects.filter(
        case=case, from_status="scheduled", to_status="in_session", actor=case.expert
    ).exists()


def test_the_watch_page_carries_the_residents_comments(client):
    hearing = hearing_for()

    page = client.get(reverse("frontend:watch", args=[hearing.public_id])).content.decode()

    assert 'id="live-panel"' in page
    assert f'data-room="{hearing.public_id}"' in page
    assert static("voting/live.js") in page
