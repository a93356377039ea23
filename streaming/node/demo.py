"""Demo data of the livestream: the live hearing whose room has members (the showcase), and a
finished public hearing with a replay to watch, and its comments and poll at their times. The replay is a real HLS recording of a few seconds of the
synthetic publisher's picture and tone, written by the broadcast's own HLS writer. Runs after
mediation_room.demo and voting.demo."""

from __future__ import annotations

from datetime import timedelta

from accounts.models import Membership
from mediation_room.models import Hearing
from streaming.broadcast.selectors import broadcast_facts, replay_directory, showcase_hearing_id
from streaming.node.replay_sample import sample_replay_write
from voting.models import Comment, Poll, PollOption, PollVote
from voting.services.rooms import room_for_hearing

REPLAY_SECONDS = 12
COMMENTS = [
    (2, "老邻居了，有话好好说。"),
    (5, "拖欠工资确实不对，但也要体谅老板的难处。"),
    (8, "分两期付款这个办法好。"),
    (10, "调解员讲得很清楚，支持！"),
]


def load(context: dict) -> list[str]:
    lines = []
    showcase = showcase_hearing_id()
    if showcase is not None:
        # make demo seats synthetic members in its room (DEMO_SHOWCASE, streaming.node.showcase)
        lines.append(f"live hearing with members in the room: /watch/{showcase}/")
    return lines + _replay()


def _replay() -> list[str]:
    hearing = next(
        (
            h
            for h in Hearing.objects.filter(state=Hearing.State.ENDED).order_by("pk")
            if (facts := broadcast_facts(h.public_id)) and facts.public and facts.recording_consent
        ),
        None,
    )
    if hearing is None:
        return []
    started = sample_replay_write(replay_directory(hearing.public_id), seconds=REPLAY_SECONDS)
    # what residents said while it was on: stored as it would have been, at its time
    room = room_for_hearing(hearing)
    residents = [m.user for m in Membership.objects.filter(verified_at__isnull=False)[:4]]
    for n, ((seconds, text), author) in enumerate(zip(COMMENTS, residents, strict=False)):
        comment = Comment.objects.create(
            room=room,
            author=author,
            client_id=f"demo-replay-{n}",
            nickname=author.display_name,
            text=text,
        )
        Comment.objects.filter(pk=comment.pk).update(
            created_at=started + timedelta(seconds=seconds)
        )
    poll = Poll.objects.create(
        room=room,
        question="分两期付清欠薪，您觉得合理吗？",
        created_by=hearing.case.expert,
        state=Poll.State.CLOSED,
        closed_at=started + timedelta(seconds=9),
    )
    options = [
        PollOption.objects.create(poll=poll, position=n, text=text)
        for n, text in enumerate(["合理", "不合理", "说不清"])
    ]
    for n, author in enumerate(residents):
        PollVote.objects.create(poll=poll, option=options[0 if n < 3 else 2], user=author)
    return [f"replay with comments: /watch/{hearing.public_id}/replay/"]
