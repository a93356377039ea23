from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import PermissionDenied
from django.utils import timezone

from tests.factories import MembershipFactory, UserFactory, advance, make_case
from voting.errors import VotingError
from voting.selectors import expert_rating
from voting.services import consultations, ratings


def test_each_party_rates_once_and_it_feeds_the_experts_record(community, expert):
    applicant, respondent = UserFactory(), UserFactory()
    case = make_case(community=community, applicant=applicant, respondent=respondent)
    with pytest.raises(VotingError) as early:
        ratings.rating_give(case=case, user=applicant, score=5)
    assert early.value.code == "too_early"
    advance(case, "agreed", expert=expert)
    ratings.rating_give(case=case, user=applicant, score=5, comment="很耐心")
    ratings.rating_give(case=case, user=respondent, score=4)
    with pytest.raises(VotingError) as twice:
        ratings.rating_give(case=case, user=applicant, score=1)
    assert twice.value.code == "already"
    with pytest.raises(PermissionDenied):
        ratings.rating_give(case=case, user=UserFactory(), score=1)
    with pytest.raises(VotingError):
        ratings.rating_give(case=case, user=respondent, score=6)
    assert expert_rating(expert.pk) == (4.5, 2)
    assert expert_rating(UserFactory().pk) == (None, 0)


@pytest.fixture
def consultation(community, coordinator):
    return consultations.consultation_post(
        actor=coordinator,
        community_id=community.pk,
        title="老旧小区加装电梯",
        body="3号楼拟加装电梯,费用按楼层分摊。",
        options=["同意", "不同意"],
        deadline=timezone.now() + timedelta(days=3),
        quorum=3,
    )


def test_verified_residents_vote_once_before_the_deadline(consultation, community, coordinator):
    voters = [MembershipFactory(community=community).user for _ in range(3)]
    outsider = MembershipFactory().user  # verified elsewhere
    unverified = MembershipFactory(community=community, verified_at=None).user
    for user in (outsider, unverified):
        with pytest.raises(PermissionDenied):
            consultations.consultation_vote(consultation=consultation, user=user, option_position=0)
    consultations.consultation_vote(consultation=consultation, user=voters[0], option_position=0)
    with pytest.raises(VotingError):
        consultations.consultation_vote(
            consultation=consultation, user=voters[0], option_position=1
        )
    consultations.consultation_vote(consultation=consultation, user=voters[1], option_position=0)
    consultations.consultation_vote(consultation=consultation, user=voters[2], option_position=1)
    with pytest.raises(VotingError):
        consultations.consultation_publish(consultation=consultation, actor=coordinator)
    with time_machine.travel(timezone.now() + timedelta(days=4)):
        with pytest.raises(VotingError):
            consultations.consultation_vote(
                consultation=consultation,
                user=MembershipFactory(community=community).user,
                option_position=0,
            )
        published = consultations.consultation_publish(consultation=consultation, actor=coordinator)
    assert published.result["quorum_met"] is True
    assert published.result["winner"] == "同意"
    assert [o["votes"] for o in published.result["options"]] == [2, 1]


def test_without_quorum_the_result_is_not_binding(consultation, community):
    consultations.consultation_vote(
        consultation=consultation,
        user=MembershipFactory(community=community).user,
        option_position=0,
    )
    with time_machine.travel(timezone.now() + timedelta(days=4)):
        assert consultations.consultations_publish_due() == 1
    consultation.refresh_from_db()
    assert consultation.result["quorum_met"] is False and consultation.result["winner"] is None


def test_only_the_communitys_coordinators_post(community):
    with pytest.raises(PermissionDenied):
        consultations.consultation_post(
            actor=UserFactory(),
            community_id=community.pk,
            title="x",
            body="y",
            options=["a", "b"],
            deadline=timezone.now() + timedelta(days=1),
            quorum=1,
        )
