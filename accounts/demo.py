"""Demo places and people: three streets of Linping, their communities, staff and residents."""

from __future__ import annotations

from django.utils import timezone

from .models import Community, CoordinatorPost, Membership, Role, Street, User
from .services import role_grant

DEMO_PASSWORD = "cloudbench-demo"  # noqa: S105 - demo data only, printed for the newcomer

STREETS = {
    "南苑街道": ["高地社区", "藕花洲社区", "南苑社区", "红旗社区"],
    "临平街道": ["西大街社区", "景星观社区", "梅堰社区"],
    "东湖街道": ["龙兴社区", "东湖社区", "新城社区"],
}

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
GIVEN = [
    "建国",
    "秀英",
    "桂兰",
    "志强",
    "海燕",
    "伟",
    "芳",
    "敏",
    "静",
    "磊",
    "丽",
    "军",
    "洋",
    "勇",
    "艳",
]


def load(context: dict) -> list[str]:
    lines: list[str] = []
    admin = User.objects.create_superuser(
        username="admin",
        email="admin@cloudbench.local",
        password=DEMO_PASSWORD,
        display_name="平台管理员",
    )
    lines.append(f"admin (superuser): admin@cloudbench.local / {DEMO_PASSWORD}")
    communities: list[Community] = []
    for i, (street_name, names) in enumerate(STREETS.items()):
        street = Street.objects.create(name=street_name, district="临平区")
        lead = User.objects.create_user(
            username=f"street{i + 1}",
            email=f"street{i + 1}@cloudbench.local",
            password=DEMO_PASSWORD,
            display_name=f"{street_name}协调员",
        )
        role_grant(user=lead, role=Role.COORDINATOR)
        CoordinatorPost.objects.create(user=lead, street=street)
        lines.append(f"street coordinator of {street_name}: {lead.email} / {DEMO_PASSWORD}")
        for name in names:
            community = Community.objects.create(name=name, street=street)
            communities.append(community)
    # One community-level coordinator, for 高地社区.
    gaodi = Community.objects.get(name="高地社区")
    local = User.objects.create_user(
        username="gaodi",
        email="gaodi@cloudbench.local",
        password=DEMO_PASSWORD,
        display_name="高地社区网格员",
    )
    role_grant(user=local, role=Role.COORDINATOR)
    CoordinatorPost.objects.create(user=local, street=gaodi.street, community=gaodi)
    lines.append(f"community coordinator of 高地社区: {local.email} / {DEMO_PASSWORD}")
    moderator = User.objects.create_user(
        username="moderator",
        email="moderator@cloudbench.local",
        password=DEMO_PASSWORD,
        display_name="直播管理员",
    )
    role_grant(user=moderator, role=Role.MODERATOR)
    lines.append(f"moderator: {moderator.email} / {DEMO_PASSWORD}")

    residents: list[User] = []
    now = timezone.now()
    for n in range(60):
        name = SURNAMES[n % len(SURNAMES)] + GIVEN[(n * 7) % len(GIVEN)]
        user = User.objects.create_user(
            username=f"resident{n:02d}",
            phone=f"+861380000{n:04d}",
            phone_verified=True,
            display_name=name,
        )
        user.set_unusable_password()
        user.save(update_fields=["password"])
        role_grant(user=user, role=Role.PARTY)
        community = communities[n % len(communities)]
        Membership.objects.create(
            user=user,
            community=community,
            household=f"{n % 9 + 1}-{n % 3 + 1}-{n % 6 + 1}0{n % 4 + 1}",
            verified_at=now,
            verified_by=admin,
        )
        residents.append(user)
    lines.append(
        "residents: sign in with 13800000000 … 13800000059 and the code shown at /dev/sms/"
    )
    context.update(admin=admin, communities=communities, residents=residents)
    return lines
