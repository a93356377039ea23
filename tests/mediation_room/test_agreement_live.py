import json

import pytest
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser
from django.utils.translation import gettext

from mediation_room.agreements import services
from mediation_room.routing import websocket_urlpatterns
from tests.factories import UserFactory
from tests.mediation_room.agreement_fixtures import *  # noqa: F403 (fixtures)

APP = URLRouter(websocket_urlpatterns)


def _communicator(setup, user):
    communicator = WebsocketCommunicator(APP, f"/ws/case/{setup.case.tracking_number}/agreement/")
    communicator.scope["user"] = user
    return communicator


@pytest.mark.django_db(transaction=True)
def test_parties_see_the_draft_change_live_while_the_expert_edits(tsetup):
    agreement = tsetup.draft()
    v2 = agreement.versions.get(number=2)

    def edit():
        terms = [dict(t) for t in v2.content["terms"]]
        terms[0]["amount"] = "11000"
        services.agreement_save_draft(
            agreement=agreement,
            actor=tsetup.expert,
            facts=v2.content["facts"],
            terms=terms,
            performance_check=v2.content["performance_check"],
        )

    def comment():
        services.agreement_comment(
            agreement=agreement, actor=tsetup.applicant, body="同意", term_key="t1"
        )

    async def run():
        party = _communicator(tsetup, tsetup.respondent)
        connected, _ = await party.connect()
        assert connected
        first = await party.receive_json_from(timeout=5)
        assert json.loads(json.dumps(first)) == first
        assert first["type"] == "draft" and first["v"] == 1
        assert first["state"] == "draft" and first["document"]["version"] == 2
        assert "¥12,000.00" in first["document"]["terms"][0]["text"]

        await database_sync_to_async(edit)()
        update = await party.receive_json_from(timeout=10)
        assert update["document"]["version"] == 3
        assert "¥11,000.00" in update["document"]["terms"][0]["text"]

        await database_sync_to_async(comment)()
        update = await party.receive_json_from(timeout=10)
        assert [c["body"] for c in update["comments"]] == ["同意"]
        assert update["comments"][0]["term"] == "t1"

        await party.send_to(text_data="not json")
        assert await party.receive_json_from() == {
            "type": "error",
            "code": "bad_json",
            "message": gettext("The message is not valid JSON."),
            "ref": "",
        }
        await party.send_json_to({"type": "edit", "text": "x"})
        assert (await party.receive_json_from())["code"] == "unknown_type"
        await party.send_to(text_data=json.dumps({"type": "ping", "pad": "x" * 5000}))
        assert (await party.receive_json_from())["code"] == "too_large"
        await party.send_json_to({"type": "ping", "extra": 1})
        assert (await party.receive_json_from())["code"] == "bad_message"
        await party.send_json_to({"type": "ping"})
        assert await party.receive_json_from() == {"type": "pong"}
        await party.send_json_to({"type": "refresh"})
        assert (await party.receive_json_from())["document"]["version"] == 3
        await party.disconnect()

    async_to_sync(run)()


@pytest.mark.django_db(transaction=True)
def test_only_people_of_the_case_may_listen(tsetup):
    tsetup.draft()
    stranger = UserFactory()

    async def run():
        for user in (stranger, AnonymousUser()):
            communicator = _communicator(tsetup, user)
            connected, code = await communicator.connect()
            assert not connected and code == 4403
        coordinator = _communicator(tsetup, tsetup.coordinator)
        connected, _ = await coordinator.connect()
        assert connected
        assert (await coordinator.receive_json_from(timeout=5))["type"] == "draft"
        await coordinator.disconnect()

    async_to_sync(run)()
