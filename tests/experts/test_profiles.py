import pytest
from django.core.exceptions import ValidationError

from experts.services import expert_rating_record
from mediation_room.errors import NotPermitted
from tests.experts.factories import make_profile
from tests.factories import UserFactory


def test_ratings_feed_the_average(db):
    profile = make_profile()
    expert_rating_record(expert=profile.user, stars=5)
    expert_rating_record(expert=profile.user, stars=3)
    profile.refresh_from_db()
    assert (profile.rating_sum, profile.rating_count, profile.rating_average) == (8, 2, 4.0)


@pytest.mark.parametrize("stars", [0, 6, -1, "5", 4.5])
def test_a_rating_outside_one_to_five_stars_is_refused(db, stars):
    profile = make_profile()
    with pytest.raises(ValidationError):
        expert_rating_record(expert=profile.user, stars=stars)
    profile.refresh_from_db()
    assert profile.rating_count == 0


def test_only_experts_can_be_rated(db):
    with pytest.raises(NotPermitted):
        expert_rating_record(expert=UserFactory(), stars=5)
