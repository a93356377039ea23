import pytest
from django.contrib.auth.models import AnonymousUser

from tests.e2e.conftest import browser, live_server_url  # noqa: F401  (fixtures, for the browser test)
from tests.factories import UserFactory, make_case, make_coordinator, make_expert
from voting import wordfilter
from voting.services import rooms


@pytest.fixture(autouse=True)
def _fresh_word_filter():
    wordfilter.reset()
    yield
    wordfilter.reset()


@pytest.fixture
def live_case(community):
    """A case in session whose parties all agreed to the livestream."""
    from tests.factories import advance

    case = make_case(community=community, respondent=UserFactory())
    coordinator = make_coordinator(community)
    expert = make_expert()
    hearing = advance(case, "in_session", coordinator=coordinator, expert=expert)
    case.refresh_from_db()
    return {"case": case, "hearing": hearing, "coordinator": coordinator, "expert": expert}


@pytest.fixture
def room(live_case):
    return rooms.room_for_hearing(live_case["hearing"])


@pytest.fixture
def anonymous():
    return AnonymousUser()
