import asyncio
from pathlib import Path

import av
import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async

from mediation_room.models import CaseEvent
from privacy.sealed import SealedReader
from streaming.models import Recording
from streaming.node.worker import reset_media_node
from tests.factories import UserFactory, advance, make_case, make_expert
from tests.streaming.probe import wait_until
from tests.streaming.room_client import RoomClient

pytestmark = [pytest.mark.media, pytest.mark.django_db(transaction=True)]


def make_room(*, respondent_records: bool):
    applicant, respondent, expert = UserFactory(), UserFactory(), make_expert()
    case = make_case(
        applicant=applicant,
        respondent=respondent,
        respondent_consents={"video": True, "livestream": False, "recording": respondent_records},
    )
    hearing = advance(case, "scheduled", expert=expert)
    return hearing, expert, applicant


def session(hearing, expert_user, applicant_user, seconds):
    async def scenario():
        try:
            expert = RoomClient(expert_user, hearing.public_id, colour="red", tone=440.0)
            applicant = RoomClient(applicant_user, hearing.public_id, colour="green", tone=660.0)
            await expert.connect()
            await expert.expect("hello")
            await applicant.connect()
            await applicant.expect("waiting")
            await expert.send({"type": "admit", "member": applicant.member_id})
            await applicant.expect("admitted")
            await expert.join()
            await applicant.join()
            assert await wait_until(
                lambda: expert.sees(applicant) and applicant.sees(expert), within=15
            )
            await asyncio.sleep(seconds)
            hello = applicant.frames[0]
            indicator = [f for f in applicant.frames if f["type"] == "recording"]
            await applicant.close()
            await expert.close()
            # the node stores the recording once the last member has left
            stored = database_sync_to_async(Recording.objects.exists)
            for _ in range(150):
                if not indicator or await stored():
                    break
                await asyncio.sleep(0.1)
            return hello, indicator
        finally:
            await reset_media_node()

    return async_to_sync(scenario)()


def test_with_everyones_consent_the_room_is_recorded_to_a_playable_mp4(room_settings):
    hearing, expert, applicant = make_room(respondent_records=True)

    hello, indicator = session(hearing, expert, applicant, seconds=2.0)

    assert indicator and indicator[0]["active"] is True
    recording = Recording.objects.get(hearing=hearing)
    path = Path(recording.file.path)
    assert path.is_relative_to(Path(room_settings.MEDIA_ROOT) / "private" / "recordings")
    with SealedReader(path) as reader:
        assert recording.sha256 == reader.sha256() and recording.size == reader.size
    with SealedReader(path) as reader, av.open(reader) as container:
        frames = list(container.decode(video=0))
    seconds = float(frames[-1].pts * frames[-1].time_base)
    assert abs(seconds - recording.duration) < 0.8
    assert recording.duration >= 2.0
    assert CaseEvent.objects.filter(kind="recording_saved", case=hearing.case).count() == 1


def test_without_every_partys_consent_nothing_is_written(room_settings):
    hearing, expert, applicant = make_room(respondent_records=False)

    hello, indicator = session(hearing, expert, applicant, seconds=1.0)

    assert hello["recording"] is False
    assert indicator == []
    assert not Recording.objects.exists()
    recordings = Path(room_settings.MEDIA_ROOT) / "private" / "recordings"
    assert not recordings.exists() or not any(recordings.rglob("*.mp4"))


def test_a_withdrawn_recording_consent_stops_the_recording_at_once(room_settings):
    from mediation_room.services import consent_set

    hearing, expert_user, applicant_user = make_room(respondent_records=True)
    respondent = hearing.case.parties.select_related("user").get(role="respondent")
    respondent_user = respondent.user

    async def scenario():
        try:
            expert = RoomClient(expert_user, hearing.public_id)
            await expert.connect()
            await expert.expect("hello")
            await expert.join()
            await expert.expect("recording", active=True)
            await database_sync_to_async(consent_set)(
                party=respondent, actor=respondent_user, kind="recording", granted=False
            )
            stopped = await expert.expect("recording", active=False)
            await expert.close()
            return stopped
        finally:
            await reset_media_node()

    stopped = async_to_sync(scenario)()

    assert stopped["active"] is False
    # what was recorded with consent is kept, and nothing after the withdrawal
    assert Recording.objects.filter(hearing=hearing).count() == 1
    assert CaseEvent.objects.filter(kind="consent_withdrawn", case=hearing.case).exists()
