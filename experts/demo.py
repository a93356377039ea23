"""Demo pool: 104 experts spread over the eight kinds, the case categories and the demo
communities, each with a weekly timetable. Made through the services, reproducible."""

from __future__ import annotations

import random
from datetime import time

from accounts.models import User
from mediation_room.models import Category

from . import services
from .models import ExpertKind, ExpertProfile

# kind -> (how many, title after the surname, the specialties that kind tends to take)
KINDS: dict[str, tuple[int, str, list[str]]] = {
    ExpertKind.LAWYER: (
        20,
        "律师",
        [Category.UNPAID_WAGES, Category.CONSUMER, Category.HOUSING_LAND, Category.PROPERTY],
    ),
    ExpertKind.NPC_DEPUTY: (10, "代表", [Category.PROPERTY, Category.NEIGHBOURS, Category.OTHER]),
    ExpertKind.PARTY_DEPUTY: (8, "书记", [Category.NEIGHBOURS, Category.PROPERTY, Category.FAMILY]),
    ExpertKind.CPPCC_MEMBER: (8, "委员", [Category.CONSUMER, Category.PROPERTY, Category.OTHER]),
    ExpertKind.PEOPLES_MEDIATOR: (
        25,
        "调解员",
        [Category.NEIGHBOURS, Category.FAMILY, Category.PROPERTY, Category.UNPAID_WAGES],
    ),
    ExpertKind.LOCAL_WORTHY: (15, "老师", [Category.NEIGHBOURS, Category.FAMILY, Category.OTHER]),
    ExpertKind.COUNSELLOR: (6, "老师", [Category.FAMILY, Category.NEIGHBOURS]),
    ExpertKind.LEGAL_WORKER: (
        12,
        "法务",
        [Category.UNPAID_WAGES, Category.HOUSING_LAND, Category.CONSUMER, Category.FAMILY],
    ),
}

SURNAMES = "沈陆钱孔吕施蒋韩杨朱秦尤许何吕张曹严华金魏陶姜谢邹喻柏水窦章云苏潘葛范彭郎鲁韦昌马苗凤方俞任袁柳"
GIVEN = "建华明丽芳国平秀英军强伟敏静磊娟涛玲文杰红霞海燕"

BIOS = {
    ExpertKind.LAWYER: "执业十余年，专注劳动争议与合同纠纷，常年担任社区法律顾问。",
    ExpertKind.NPC_DEPUTY: "区人大代表，长期关注老旧小区改造和物业管理问题。",
    ExpertKind.PARTY_DEPUTY: "社区党委委员，熟悉居民情况，擅长邻里沟通。",
    ExpertKind.CPPCC_MEMBER: "区政协委员，关注消费者权益保护与营商环境。",
    ExpertKind.PEOPLES_MEDIATOR: "从事人民调解工作多年，调解成功率高，群众口碑好。",
    ExpertKind.LOCAL_WORTHY: "退休教师，在本地生活五十多年，街坊邻里都信得过。",
    ExpertKind.COUNSELLOR: "国家二级心理咨询师，擅长家庭关系与情绪疏导。",
    ExpertKind.LEGAL_WORKER: "基层法律服务工作者，熟悉民间借贷、房屋租赁等常见纠纷。",
}

# Weekly timetables (weekday, from, until) an expert may keep.
TIMETABLES: list[list[tuple[int, time, time]]] = [
    [(d, time(18, 30), time(21, 0)) for d in range(5)],  # weekday evenings
    [(5, time(9), time(12)), (5, time(14), time(17)), (6, time(9), time(12))],  # weekends
    [(d, time(9), time(11, 30)) for d in range(5)] + [(d, time(14), time(17)) for d in (1, 3)],
    [(1, time(19), time(21)), (3, time(19), time(21)), (5, time(9), time(11, 30))],
    [(d, time(14), time(17, 30)) for d in range(7)],  # retired: every afternoon
]


def load(context: dict) -> list[str]:
    rng = random.Random(100)  # noqa: S311 - demo data, reproducible on purpose
    communities = context["communities"]
    profiles: list[ExpertProfile] = []
    n = 0
    for kind, (count, title, leaning) in KINDS.items():
        for _ in range(count):
            name = SURNAMES[n % len(SURNAMES)] + GIVEN[(n * 7) % len(GIVEN)] + title
            home_index = rng.randrange(len(communities))
            # Experts mostly serve around home: their community and a few in the same street.
            nearby = [c for c in communities if c.street_id == communities[home_index].street_id]
            served = {communities[home_index], *rng.sample(nearby, k=min(len(nearby), 2))}
            if rng.random() < 0.2:
                served.add(rng.choice(communities))
            specialties = rng.sample(leaning, k=min(len(leaning), rng.randint(1, 3)))
            if rng.random() < 0.15:
                specialties.append(rng.choice(Category.values))
            languages = ["普通话"]
            if rng.random() < 0.4:
                languages.append("杭州话")
            if rng.random() < 0.3:
                languages.append("临平话")
            if kind == ExpertKind.LAWYER and rng.random() < 0.3:
                languages.append("英语")
            profile, _created = services.expert_profile_upsert(
                actor=None,
                data=services.ProfileData(
                    phone=f"+861360000{n:04d}",
                    public_name=name,
                    kind=kind,
                    specialties=specialties,
                    communities=sorted(served, key=lambda c: c.pk),
                    home_community=communities[home_index] if rng.random() < 0.7 else None,
                    languages=languages,
                    bio=BIOS[kind],
                    load_cap=rng.randint(3, 8),
                ),
            )
            User.objects.filter(pk=profile.user_id).update(phone_verified=True)
            for weekday, start, end in rng.choice(TIMETABLES):
                services.availability_slot_add(
                    actor=profile.user, weekday=weekday, start_time=start, end_time=end
                )
            if rng.random() < 0.6:
                count_ratings = rng.randint(1, 25)
                ExpertProfile.objects.filter(pk=profile.pk).update(
                    rating_count=count_ratings,
                    rating_sum=sum(rng.choice([3, 4, 4, 5, 5, 5]) for _ in range(count_ratings)),
                )
            profiles.append(profile)
            n += 1
    context["experts"] = profiles
    return [
        f"{len(profiles)} experts in the pool (/experts/): sign in with 13600000000 … "
        f"1360000{len(profiles) - 1:04d} and the code shown at /dev/sms/; their page is /experts/me/"
    ]
