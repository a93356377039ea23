"""Demo cases in every state of the lifecycle, driven through the real services so that every
case has its true audit trail; afterwards the dates are spread over the past weeks."""

from __future__ import annotations

import random
from datetime import timedelta

from django.utils import timezone

from accounts.models import Role, User
from accounts.services import role_grant

from . import services
from .agreements.demo import agreement_sign_all
from .models import Case, CaseEvent, Category, Hearing, Status

DESCRIPTIONS = {
    Category.UNPAID_WAGES: "在小区装修队干了三个月，老板还欠我两个月工资共一万二千元，多次催讨未果。",
    Category.NEIGHBOURS: "楼上住户夜间噪音严重，空调外机滴水到我家阳台，沟通几次没有改善。",
    Category.PROPERTY: "物业公司收取停车费后车位仍被占用，电梯经常故障，要求减免部分物业费。",
    Category.FAMILY: "老人赡养费用分担问题，兄弟姐妹之间意见不一致，希望有人居中调解。",
    Category.CONSUMER: "在社区门口超市办的储值卡，店铺突然停业，卡里还有两千元余额。",
    Category.HOUSING_LAND: "老房子院墙边界有争议，邻居扩建占用了公共通道。",
    Category.OTHER: "宠物狗在小区内咬伤我家孩子，对方不愿承担医药费。",
}

# How far each demo case travels along the lifecycle.
PATHS: list[list[str]] = [
    [],
    ["accept"],
    ["decline"],
    ["accept", "match"],
    ["accept", "match", "schedule"],
    ["accept", "match", "schedule", "start"],
    ["accept", "match", "schedule", "start", "agree"],
    ["accept", "match", "schedule", "start", "disagree"],
    ["withdraw"],
    ["accept", "match", "schedule", "start", "agree", "follow_up"],
    ["accept", "match", "schedule", "start", "agree", "follow_up", "close"],
]


def _experts(context: dict) -> list[User]:
    experts = context.get("experts") or list(User.objects.filter(groups__name=Role.EXPERT))
    if experts:
        return [e.user if hasattr(e, "user") else e for e in experts]
    made = []
    for n in range(5):
        user = User.objects.create_user(
            username=f"mediator{n}",
            phone=f"+861390000{n:04d}",
            phone_verified=True,
            display_name=["沈律师", "陆调解员", "钱代表", "孔委员", "吕老师"][n],
        )
        role_grant(user=user, role=Role.EXPERT)
        made.append(user)
    return made


def load(context: dict) -> list[str]:
    rng = random.Random(2026)  # noqa: S311 - demo data, reproducible on purpose
    residents: list[User] = context["residents"]
    experts = _experts(context)
    categories = list(Category.values)
    made = 0
    for n in range(35):
        path = PATHS[n % len(PATHS)]
        applicant = residents[n % len(residents)]
        respondent = residents[(n * 13 + 7) % len(residents)]
        if respondent == applicant:
            respondent = residents[(n + 1) % len(residents)]
        community = applicant.memberships.first().community
        category = categories[n % len(categories)]
        coordinator = User.objects.filter(
            posts__street=community.street, posts__community=None
        ).first()
        case = services.case_register(
            reporter=applicant,
            category=category,
            description=DESCRIPTIONS[category],
            community=community,
            applicant_name=applicant.display_name,
            respondent_name=respondent.display_name,
            respondent_phone=respondent.phone,
            preferred_times=rng.choice(["工作日晚上", "周六上午", "周日下午", "随时可以"]),
            consents={"video": True, "livestream": n % 3 != 0, "recording": n % 2 == 0},
        )
        if path:
            respondent_party = case.parties.get(role="respondent")
            services.party_claim(party=respondent_party, user=respondent)
            for kind in ("video", "livestream", "recording"):
                services.consent_set(
                    party=respondent_party,
                    actor=respondent,
                    kind=kind,
                    granted=kind != "recording" or n % 4 == 0,
                )
        expert = experts[n % len(experts)]
        hearing = None
        for step in path:
            if step == "accept":
                services.case_accept(case=case, actor=coordinator)
            elif step == "decline":
                services.case_decline(
                    case=case,
                    actor=coordinator,
                    reason="该纠纷已进入诉讼程序，不属于人民调解受理范围。",
                )
            elif step == "match":
                services.case_match(case=case, expert=expert, actor=coordinator)
            elif step == "schedule":
                start = timezone.now() + timedelta(days=rng.randint(1, 10), hours=rng.randint(0, 8))
                hearing = services.hearing_schedule(
                    case=case,
                    actor=coordinator,
                    starts_at=start,
                    ends_at=start + timedelta(hours=1),
                )
            elif step == "start":
                services.session_start(hearing=hearing, actor=expert)
            elif step == "agree":
                # signed by everyone, locked, in the ledger, with its PDF: the case is agreed
                agreement_sign_all(case)
            elif step == "disagree":
                services.session_conclude(
                    hearing=hearing, actor=expert, agreed=False, note="双方分歧较大"
                )
            elif step == "withdraw":
                services.case_withdraw(case=case, actor=applicant, reason="双方已自行和解")
            elif step == "follow_up":
                services.case_follow_up(case=case, actor=coordinator, note="回访：款项已按期支付")
            elif step == "close":
                services.case_close(case=case, actor=coordinator)
            case.refresh_from_db()
        _spread_dates(case, days_ago=rng.randint(2, 60), steps=len(path) + 1)
        made += 1
    # Keep a live session for the demo: its hearing starts now.
    Hearing.objects.filter(state=Hearing.State.LIVE).update(started_at=timezone.now())
    return [f"{made} demo cases in every state ({', '.join(Status.values)})"]


def _spread_dates(case: Case, *, days_ago: int, steps: int) -> None:
    """Move the case's history back in time, keeping the order of its events."""
    shift = timedelta(days=days_ago)
    events = list(case.events.order_by("created_at", "pk"))
    span = timedelta(days=max(days_ago - 1, 1))
    for i, event in enumerate(events):
        new_time = event.created_at - shift + span * i / max(len(events), 1)
        CaseEvent.objects.filter(pk=event.pk).update(created_at=new_time)
    last = (
        events[-1].created_at - shift + span * (len(events) - 1) / max(len(events), 1)
        if events
        else None
    )
    created = events[0].created_at - shift if events else case.created_at
    Case.objects.filter(pk=case.pk).update(created_at=created)
    if last is not None and case.status not in (Status.DECLINED, Status.CLOSED):
        from .lifecycle import stage_deadline

        Case.objects.filter(pk=case.pk).update(
            status_changed_at=last, stage_deadline=stage_deadline(case.status, last, case.category)
        )
