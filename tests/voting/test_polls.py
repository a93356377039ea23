import threading

import pytest
from django.core.exceptions import PermissionDenied
from django.db import connection

from tests.factories import UserFactory
from voting import selectors
from voting.errors import VotingError
from voting.models import Poll, PollVote, RoomEvent
from voting.services import polling


def test_two_hundred_concurrent_votes_give_an_exact_tally(transactional_db, live_case, room):
    poll = polling.poll_open(
        room=room,
        actor=live_case["expert"],
        question="这个方案公平吗?",
        options=["公平", "基本公平", "不公平"],
    )
    voters = UserFactory.create_batch(200)
    start = threading.Barrier(40)
    errors: list[BaseException] = []

    def cast(batch):
        try:
            start.wait()
            for i, user in batch:
                polling.vote_cast(poll=poll, user=user, option_position=i % 3)
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    work = list(enumerate(voters))
    threads = [threading.Thread(target=cast, args=(work[k::40],)) for k in range(40)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert PollVote.objects.filter(poll=poll).count() == 200
    assert selectors.poll_counts(poll) == [67, 67, 66]


def test_a_second_vote_by_the_same_user_is_refused(live_case, room):
    poll = polling.poll_open(
        room=room, actor=live_case["expert"], question="同意吗?", options=["同意", "不同意"]
    )
    voter = UserFactory()
    polling.vote_cast(poll=poll, user=voter, option_position=0)
    with pytest.raises(VotingError) as refused:
        polling.vote_cast(poll=poll, user=voter, option_position=1)
    assert refused.value.code == "already_voted"
    assert selectors.poll_counts(poll) == [1, 0]


def test_votes_on_a_closed_poll_or_a_forged_option_are_refused(live_case, room):
    poll = polling.poll_open(
        room=room, actor=live_case["coordinator"], question="同意吗?", options=["同意", "不同意"]
    )
    with pytest.raises(VotingError) as forged:
        polling.vote_cast(poll=poll, user=UserFactory(), option_position=7)
    assert forged.value.code == "no_option"
    polling.poll_close(poll=poll, actor=live_case["coordinator"])
    with pytest.raises(VotingError) as closed:
        polling.vote_cast(poll=poll, user=UserFactory(), option_position=0)
    assert closed.value.code == "poll_closed"
    with pytest.raises(VotingError):
        selectors.poll_lookup(room=room, poll_public_id="FORGED")


def test_only_the_mediator_or_a_coordinator_opens_a_poll(live_case, room):
    with pytest.raises(PermissionDenied):
        polling.poll_open(room=room, actor=UserFactory(), question="?", options=["a", "b"])
    party = live_case["case"].parties.get(role="applicant").user
    with pytest.raises(PermissionDenied):
        polling.poll_open(room=room, actor=party, question="公平吗?", options=["是", "否"])
    with pytest.raises(VotingError):
        polling.poll_open(
            room=room, actor=live_case["expert"], question="只有一个选项", options=["是"]
        )


def test_results_after_closing_are_not_broadcast_while_open(live_case, room):
    poll = polling.poll_open(
        room=room,
        actor=live_case["expert"],
        question="公平吗?",
        options=["是", "否"],
        results=Poll.Results.AFTER_CLOSE,
    )
    opened = RoomEvent.objects.get(room=room, kind="poll.opened").payload
    assert "counts" not in opened
    polling.vote_cast(poll=poll, user=UserFactory(), option_position=0)
    assert not RoomEvent.objects.filter(room=room, kind="poll.tally").exists()
    polling.poll_close(poll=poll, actor=live_case["expert"])
    assert RoomEvent.objects.get(room=room, kind="poll.closed").payload["counts"] == [1, 0]
