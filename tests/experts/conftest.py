import pytest

from tests.factories import UserFactory, advance, make_case


@pytest.fixture
def accepted_case(community, coordinator):
    """A case in the coordinator's community, accepted and waiting for a mediator."""
    case = make_case(community=community, respondent=UserFactory())
    advance(case, "accepted", coordinator=coordinator)
    return case
