"""The replay page of a finished public hearing: what is shown, when, to whom, and how a withdrawn
consent takes it away (page and files)."""

from __future__ import annotations

import shutil
from datetime import datetime, timedelta

import pytest

from mediation_room import services as case_services
from mediation_room.models import CaseEvent
from streaming.broadcast.selectors import REPLAY_PLAYLIST, playlist_facts, replay_for
from streaming.node.replay_sample import sample_replay_write
from tests.factories import UserFactory, advance, make_case
from voting.models import Comment, PanelEvaluation, Poll, PollOption, PollVote
from voting.services.rooms import room_for_hearing

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def sample(tmp_path_factory):
    """One real replay (a few seconds of the synthetic picture), copied into each test."""
    directory = tmp_path_factory.mktemp("sample") / "replay"
    started = sample_replay_write(directory, seconds=4)
    return directory, started


def test_the_sample_replay_holds_its_seconds_of_picture_and_sound_dated_one_after_another(sample):
    """Written faster than real time, it still reads as filmed: 4 s of frames and tone, and each
    segment dated where the one before it ended."""
    import av

    directory, started = sample
    text = (directory / REPLAY_PLAYLIST).read_text()
    assert playlist_facts(text) == (started, pytest.approx(4.0), True)
    lines = text.splitlines()
    dates = [
        datetime.fromisoformat(x.split(":", 1)[1])
        for x in lines
        if x.startswith("#EXT-X-PROGRAM-DATE-TIME:")
    ]
    lengths = [float(x[8:].split(",")[0]) for x in lines if x.startswith("#EXTINF:")]
    for before, after, length in zip(dates, dates[1:], lengths, strict=False):
        assert (after - before).total_seconds() == pytest.approx(length, abs=0.002)
    counts = {"video": 0, "audio": 0}
    last = {"video": 0.0, "audio": 0.0}
    with av.open(str(directory / REPLAY_PLAYLIST)) as container:
        for packet in container.demux():
            if packet.pts is not None:
                counts[packet.stream.type] += 1
                last[packet.stream.type] = float(packet.pts * packet.time_base)
    assert counts["video"] == 4 * 15
    assert last["audio"] == pytest.approx(last["video"], abs=0.1)


@pytest.fixture
def finished(settings, tmp_path, sample):
    settings.BROADCAST_HLS_ROOT = tmp_path / "hls"
    applicant, respondent = UserFactory(), UserFactory()
    case = make_case(applicant=applicant, respondent=respondent)
    hearing = advance(case, "agreed")
    source, started = sample
    shutil.copytree(source, settings.BROADCAST_HLS_ROOT / hearing.public_id)
    room = room_for_hearing(hearing)
    viewer = UserFactory()
    for seconds, text in ((1, "早就该调解了"), (3, "双方都让一步吧")):
        comment = Comment.objects.create(
            room=room, author=viewer, client_id=text, nickname="居民A", text=text
        )
        Comment.objects.filter(pk=comment.pk).update(
            created_at=started + timedelta(seconds=seconds)
        )
    Comment.objects.create(
        room=room, author=viewer, client_id="x", nickname="B", text="被删掉的", state="deleted"
    )
    poll = Poll.objects.create(
        room=room,
        question="这个方案公平吗？",
        created_by=case.expert,
        state=Poll.State.CLOSED,
        closed_at=started + timedelta(seconds=2),
    )
    yes = PollOption.objects.create(poll=poll, position=0, text="公平")
    PollOption.objects.create(poll=poll, position=1, text="不公平")
    PollVote.objects.create(poll=poll, option=yes, user=viewer)
    return {"hearing": hearing, "applicant": applicant, "respondent": respondent, "case": case}


def test_replay_page_shows_the_comments_and_poll_at_their_times(client, finished):
    public_id = finished["hearing"].public_id
    page = client.get(f"/watch/{public_id}/replay/")
    assert page.status_code == 200
    body = page.content.decode()
    # the ladder's master playlist (a replay keeps every rendition)
    assert f"/media/hls/{public_id}/index.m3u8" in body
    assert body.index("早就该调解了") < body.index("这个方案公平吗") < body.index("双方都让一步吧")
    assert 'data-t="1.0"' in body and 'data-t="2.0"' in body and 'data-t="3.0"' in body
    assert "被删掉的" not in body
    assert "公平: 1" in body
    # the playlist and its segments are served
    assert client.get(f"/media/hls/{public_id}/live.m3u8").status_code == 200
    assert client.get(f"/media/hls/{public_id}/index.m3u8").status_code == 200
    assert replay_for(public_id).duration >= 3


def test_no_replay_while_live_or_without_recording_consent(client, settings, tmp_path, sample):
    settings.BROADCAST_HLS_ROOT = tmp_path / "hls"
    live = advance(make_case(respondent=UserFactory()), "in_session")
    private = advance(
        make_case(
            respondent=UserFactory(),
            consents={"video": True, "livestream": True, "recording": False},
        ),
        "agreed",
    )
    for hearing in (live, private):
        shutil.copytree(sample[0], settings.BROADCAST_HLS_ROOT / hearing.public_id)
    assert client.get(f"/watch/{live.public_id}/replay/").status_code == 404
    assert client.get(f"/watch/{private.public_id}/replay/").status_code == 404
    assert client.get(f"/media/hls/{private.public_id}/segment_00000.ts").status_code == 404
    assert client.get("/watch/not-a-hearing-id/replay/").status_code == 404


@pytest.mark.parametrize("kind", ["recording", "livestream"])
def test_withdrawn_consent_removes_the_replay(
    client, finished, django_capture_on_commit_callbacks, settings, kind
):
    hearing = finished["hearing"]
    directory = settings.BROADCAST_HLS_ROOT / hearing.public_id
    party = finished["case"].parties.get(role="respondent")
    with django_capture_on_commit_callbacks(execute=True):
        case_services.consent_set(
            party=party, actor=finished["respondent"], kind=kind, granted=False
        )
    assert not directory.exists()
    assert client.get(f"/watch/{hearing.public_id}/replay/").status_code == 404
    assert client.get(f"/media/hls/{hearing.public_id}/live.m3u8").status_code == 404
    assert CaseEvent.objects.filter(case=finished["case"], kind="replay_removed").count() == 1
    # granting again after the session is refused: what was removed stays removed
    with pytest.raises(case_services.CaseError):
        case_services.consent_set(
            party=party, actor=finished["respondent"], kind=kind, granted=True
        )


def test_panel_evaluations_are_shown_by_seat(client, finished):
    from voting.models import Panel, Panelist, PanelVolunteer

    case = finished["case"]
    started = replay_for(finished["hearing"].public_id).started_at
    panel = Panel.objects.create(case=case, size=1, commitment="c", seed="s", committed_at=started)
    member = UserFactory(display_name="王评议")
    volunteer = PanelVolunteer.objects.create(user=member, community=case.community)
    panelist = Panelist.objects.create(panel=panel, volunteer=volunteer, user=member, position=1)
    evaluation = PanelEvaluation.objects.create(
        panelist=panelist, verdict="fair", reason="调解员耐心听取了双方意见"
    )
    PanelEvaluation.objects.filter(pk=evaluation.pk).update(
        created_at=started + timedelta(seconds=3)
    )
    body = client.get(f"/watch/{finished['hearing'].public_id}/replay/").content.decode()
    assert "调解员耐心听取了双方意见" in body
    assert "王评议" not in body
