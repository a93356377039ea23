import pytest
from django.core.exceptions import PermissionDenied

from tests.factories import UserFactory
from voting.errors import VotingError
from voting.models import Comment, ModerationAction, RoomEvent
from voting.services import comments, moderation


def _post(room, user, client_id, text="你好"):
    return comments.comment_post(room=room, author=user, client_id=client_id, text=text)


def test_a_comment_with_a_listed_word_is_held_not_shown(room, live_case):
    moderation.sensitive_word_add(word="骗子", actor=live_case["coordinator"])
    moderation.sensitive_word_add(word="Scam", actor=live_case["coordinator"])
    author = UserFactory()
    held = _post(room, author, "w-00000001", "这个老板就是个骗 子").comment
    held_en = _post(room, author, "w-00000002", "what a ＳＣＡＭ!").comment
    shown = _post(room, author, "w-00000003", "大家冷静一下").comment
    assert held.state == Comment.State.HELD and held.hold_reason == "words"
    assert held_en.state == Comment.State.HELD
    assert shown.state == Comment.State.VISIBLE
    assert list(RoomEvent.objects.filter(room=room).values_list("payload__id", flat=True)) == [
        shown.pk
    ]
    moderation.comment_approve(comment=held_en, moderator=live_case["expert"])
    held_en.refresh_from_db()
    assert held_en.state == Comment.State.VISIBLE and held_en.seq == 2


def test_review_all_mode_holds_everything(room, live_case):
    moderation.room_settings_update(
        room=room,
        moderator=live_case["coordinator"],
        slow_mode_seconds=0,
        review_all=True,
        comments_open=True,
        reason="情绪激动",
    )
    comment = _post(room, UserFactory(), "r-00000001").comment
    assert comment.state == Comment.State.HELD and comment.hold_reason == "review_all"
    action = ModerationAction.objects.get(kind="settings")
    assert action.moderator == live_case["coordinator"] and action.reason == "情绪激动"


def test_slow_mode_allows_one_comment_per_interval(room, live_case):
    moderation.room_settings_update(
        room=room,
        moderator=live_case["expert"],
        slow_mode_seconds=30,
        review_all=False,
        comments_open=True,
    )
    author = UserFactory()
    _post(room, author, "s-00000001")
    with pytest.raises(VotingError) as refused:
        _post(room, author, "s-00000002")
    assert refused.value.code == "slow_mode"
    assert "30" in refused.value.message
    # A resend of the comment that got through is not a new comment and is not refused.
    assert _post(room, author, "s-00000001").created is False
    # Someone else may still speak.
    _post(room, UserFactory(), "s-00000003")


def test_muted_user_is_refused_and_the_mute_is_logged(room, live_case):
    noisy = UserFactory()
    _post(room, noisy, "m-00000001")
    moderation.user_mute(room=room, user=noisy, moderator=live_case["expert"], reason="刷屏")
    with pytest.raises(PermissionDenied) as refused:
        _post(room, noisy, "m-00000002")
    assert refused.value.code == "muted"
    log = ModerationAction.objects.get(kind="mute")
    assert (log.moderator, log.target_user, log.reason) == (live_case["expert"], noisy, "刷屏")
    moderation.user_unmute(room=room, user=noisy, moderator=live_case["expert"], reason="已道歉")
    _post(room, noisy, "m-00000003")


def test_banned_user_is_refused_everywhere(room, live_case):
    troll = UserFactory()
    moderation.user_ban(user=troll, moderator=live_case["coordinator"], reason="辱骂", room=room)
    with pytest.raises(PermissionDenied) as refused:
        _post(room, troll, "b-00000001")
    assert refused.value.code == "banned"


def test_delete_removes_a_comment_for_everyone_with_a_reason(room, live_case):
    comment = _post(room, UserFactory(), "d-00000001").comment
    with pytest.raises(VotingError):
        moderation.comment_delete(comment=comment, moderator=live_case["expert"], reason="")
    moderation.comment_delete(comment=comment, moderator=live_case["expert"], reason="人身攻击")
    comment.refresh_from_db()
    assert comment.state == Comment.State.DELETED
    removed = RoomEvent.objects.get(room=room, kind="comment.removed")
    assert removed.payload["id"] == comment.pk
    assert ModerationAction.objects.filter(kind="delete", comment=comment).exists()


def test_only_moderators_moderate(room, live_case):
    comment = _post(room, UserFactory(), "p-00000001").comment
    bystander = UserFactory()
    with pytest.raises(PermissionDenied):
        moderation.comment_delete(comment=comment, moderator=bystander, reason="不喜欢")
    with pytest.raises(PermissionDenied):
        moderation.user_mute(room=room, user=comment.author, moderator=bystander, reason="x")
    with pytest.raises(PermissionDenied):
        moderation.sensitive_word_add(word="坏词", actor=bystander)


def test_per_user_rate_limit_has_a_clear_message(room):
    author = UserFactory()
    limit, _period = comments.USER_COMMENT_LIMIT
    # A fixed window may turn over mid-test, so allow up to two windows' worth before the refusal.
    with pytest.raises(VotingError) as refused:
        for i in range(2 * limit + 1):
            _post(room, author, f"q-{i:08d}")
    assert refused.value.code == "rate_limited"
    assert "too fast" in refused.value.message or "太快" in refused.value.message


def test_nickname_never_a_phone_number(room):
    author = UserFactory(display_name="")
    comment = _post(room, author, "n-00000001").comment
    event = RoomEvent.objects.get(room=room).payload
    assert author.phone not in event["nick"] and author.phone[-4:] not in event["nick"]
    assert event["nick"] == comment.nickname


def test_text_is_stored_as_typed_one_line_and_control_characters_removed(room):
    comment = _post(room, UserFactory(), "x-00000001", "<b>hi</b>\n\u202eevil\x00").comment
    assert comment.text == "<b>hi</b> evil"
