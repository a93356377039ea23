"""Demo data of the audience side: a sensitive-word list, panel volunteers, comments in a live
session, and a community consultation. Runs after mediation_room.demo."""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone

from accounts.models import CoordinatorPost, Membership, User
from mediation_room.models import Hearing

from .services import bench_panel, comments, consultations, moderation, rooms

WORDS = ["骗子", "去死", "傻逼", "scam", "idiot"]


def load(context: dict) -> list[str]:
    admin: User = context["admin"]
    lines: list[str] = []
    for word in WORDS:
        moderation.sensitive_word_add(word=word, actor=admin, reason="demo")
    volunteers = 0
    for membership in Membership.objects.filter(verified_at__isnull=False):
        bench_panel.volunteer_set(
            user=membership.user, community_id=membership.community_id, active=True
        )
        volunteers += 1
    lines.append(f"bench panel volunteers: {volunteers}; sensitive words: {len(WORDS)}")
    hearing = Hearing.objects.filter(state=Hearing.State.LIVE).select_related("case").first()
    if hearing is not None:
        room = rooms.room_for_hearing(hearing)
        speakers = list(Membership.objects.filter(verified_at__isnull=False)[:3])
        for i, (membership, text) in enumerate(
            zip(
                speakers,
                ["双方都冷静一点,好好说。", "工资拖欠三个月确实不应该。", "调解员讲得很清楚。"],
                strict=False,
            )
        ):
            comments.comment_post(
                room=room, author=membership.user, client_id=f"demo-comment-{i:04d}", text=text
            )
        lines.append(f"live comments: /live/{hearing.public_id}/")
    post = CoordinatorPost.objects.select_related("street").first()
    community = None
    if post is not None:
        community = post.community or post.street.communities.first()
    if community is not None:
        consultation = consultations.consultation_post(
            actor=post.user,
            community_id=community.pk,
            title="3号楼加装电梯",
            body="3号楼居民提出加装电梯,费用按楼层分摊,一楼住户不承担费用。请各位居民投票表决。",
            options=["同意", "不同意", "弃权"],
            deadline=timezone.now() + timedelta(days=7),
            quorum=5,
        )
        lines.append(f"consultation: /consultations/{consultation.public_id}/")
    return lines
