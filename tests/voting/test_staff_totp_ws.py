"""A staff member who must set up TOTP first cannot open a live socket either; once set up, or
where it is not required, the socket opens as before."""

import pytest
from allauth.mfa.totp.internal.auth import TOTP, generate_totp_secret
from asgiref.sync import async_to_sync
from channels.testing import WebsocketCommunicator

from tests.factories import make_coordinator

pytestmark = pytest.mark.django_db(transaction=True)


def _opens(user, hearing) -> bool:
    from asgi import application

    async def attempt():
        comm = WebsocketCommunicator(
            application,
            f"/ws/live/{hearing.public_id}/",
            headers=[(b"origin", b"http://testserver")],
        )
        comm.scope["user"] = user
        connected, code = await comm.connect(timeout=10)
        await comm.disconnect()
        return connected

    return async_to_sync(attempt)()


def test_staff_without_totp_get_no_socket_where_it_is_required(settings, live_case, community):
    settings.MFA_REQUIRED_FOR_STAFF = True
    coordinator = make_coordinator(community)
    hearing = live_case["hearing"]

    assert not _opens(coordinator, hearing)
    TOTP.activate(coordinator, generate_totp_secret())
    assert _opens(coordinator, hearing)


def test_staff_sockets_open_where_totp_is_not_required(settings, live_case, community):
    settings.MFA_REQUIRED_FOR_STAFF = False
    assert _opens(make_coordinator(community), live_case["hearing"])
