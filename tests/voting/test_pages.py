from datetime import timedelta

from django.utils import timezone

from accounts.models import Membership
from tests.factories import MembershipFactory, UserFactory
from voting.models import Comment, ModerationAction
from voting.services import comments, moderation

XSS = "<img src=x onerror=\"document.title='pwned'\"><script>alert(1)</script>"


def test_live_page_shows_comments_escaped_and_works_without_javascript(client, live_case, room):
    comments.comment_post(room=room, author=UserFactory(), client_id="xss-000001", text=XSS)
    page = client.get(f"/live/{live_case['hearing'].public_id}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "<script>alert(1)</script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    # Signed in, the plain form posts a comment without any JavaScript.
    user = UserFactory()
    client.force_login(user)
    response = client.post(
        f"/live/{live_case['hearing'].public_id}/comment/",
        {"client_id": "form-000001", "text": "表单发言"},
    )
    assert response.status_code == 302
    assert Comment.objects.filter(author=user, text="表单发言").exists()
    events = client.get(f"/live/{live_case['hearing'].public_id}/events?after=0").json()["events"]
    assert events[0]["text"] == XSS  # JSON carries the text; the page inserts it as text


def test_private_session_pages_are_not_found_for_strangers(client, community):
    from tests.factories import advance, make_case

    case = make_case(
        community=community,
        respondent=UserFactory(),
        respondent_consents={"video": True, "livestream": False, "recording": False},
    )
    hearing = advance(case, "scheduled")
    assert client.get(f"/live/{hearing.public_id}/").status_code == 404
    assert client.get(f"/live/{hearing.public_id}/events?after=0").status_code == 404
    assert client.get("/live/no-such-room/").status_code == 404


def test_moderation_console_actions_are_logged(
    client, live_case, room, django_assert_max_num_queries
):
    moderation.sensitive_word_add(word="垃圾", actor=live_case["coordinator"])
    author = UserFactory()
    held = comments.comment_post(
        room=room, author=author, client_id="held-000001", text="垃圾方案"
    ).comment
    shown = comments.comment_post(
        room=room, author=author, client_id="shown-00001", text="正常发言"
    ).comment
    url = f"/live/{live_case['hearing'].public_id}/moderate/"
    assert client.get(url).status_code == 302  # sign in first
    client.force_login(UserFactory())
    assert client.get(url).status_code == 404  # not a moderator
    client.force_login(live_case["coordinator"])
    with django_assert_max_num_queries(40):
        page = client.get(url)
    assert "垃圾方案" in page.content.decode()
    client.post(url + "reject/", {"comment": held.pk, "reason": "不文明"})
    client.post(url + "delete/", {"comment": shown.pk, "reason": "跑题"})
    client.post(url + "mute/", {"user": author.pk, "reason": "多次违规"})
    client.post(
        url + "settings/", {"slow_mode_seconds": 10, "review_all": "on", "comments_open": "on"}
    )
    client.post(
        url + "poll_open/",
        {"question": "方案公平吗?", "options_text": "公平\n不公平", "results": "live"},
    )
    kinds = set(ModerationAction.objects.values_list("kind", flat=True))
    assert {"reject", "delete", "mute", "settings"} <= kinds
    room.refresh_from_db()
    assert room.slow_mode_seconds == 10 and room.review_all
    assert room.polls.filter(question="方案公平吗?").exists()
    # Someone who never commented here cannot be muted through a forged id.
    stranger = UserFactory()
    client.post(url + "mute/", {"user": stranger.pk, "reason": "x"})
    assert not room.mutes.filter(user=stranger).exists()


def test_words_page_for_coordinators_only(client, live_case):
    client.force_login(UserFactory())
    assert client.get("/moderation/words/").status_code == 403
    client.force_login(live_case["coordinator"])
    client.post("/moderation/words/", {"words": "骗子\nscam"})
    assert "骗子" in client.get("/moderation/words/").content.decode()


def test_panel_volunteer_and_case_pages(client, live_case, community):
    resident = MembershipFactory(community=community).user
    client.force_login(resident)
    client.post("/panel/volunteer/", {"community": community.pk, "active": "1"})
    assert resident.panel_volunteering.filter(active=True).exists()
    client.force_login(live_case["coordinator"])
    page = client.get(f"/cases/{live_case['case'].tracking_number}/panel/")
    assert page.status_code == 200
    response = client.post(
        f"/cases/{live_case['case'].tracking_number}/panel/", {"step": "commit", "size": 7}
    )
    assert response.status_code == 302
    assert "7" in client.get(f"/cases/{live_case['case'].tracking_number}/panel/").content.decode()


def test_consultation_pages(client, community, coordinator):
    client.force_login(coordinator)
    deadline = (timezone.localtime() + timedelta(days=2)).strftime("%Y-%m-%dT%H:%M")
    response = client.post(
        "/consultations/new/",
        {
            "community": community.pk,
            "title": "加装电梯",
            "body": "是否同意?",
            "options_text": "同意\n不同意",
            "deadline": deadline,
            "quorum": 1,
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    url = response["Location"]
    resident = MembershipFactory(community=community).user
    client.force_login(resident)
    assert "加装电梯" in client.get("/consultations/").content.decode()
    client.post(url + "vote/", {"option": 0})
    client.post(url + "remark/", {"text": "<b>支持</b>"})
    page = client.get(url).content.decode()
    assert "你已投票" in page or "You voted" in page
    assert "&lt;b&gt;支持&lt;/b&gt;" in page
    outsider = UserFactory()
    Membership.objects.filter(user=outsider).delete()
    client.force_login(outsider)
    assert client.get(url).status_code == 404
