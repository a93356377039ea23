"""factory_boy factories shared by every app's tests."""

from __future__ import annotations

from datetime import timedelta

import factory
from django.utils import timezone

from accounts.models import Community, CoordinatorPost, Membership, Role, Street, User
from accounts.services import role_grant
from mediation_room import services
from mediation_room.models import Case, Hearing


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    phone = factory.Sequence(lambda n: f"+86139{n:08d}")
    phone_verified = True
    display_name = factory.Sequence(lambda n: f"居民{n}")
    email = factory.Sequence(lambda n: f"user{n}@example.test")

    @factory.post_generation
    def roles(self, create, extracted, **kwargs):
        for role in extracted or []:
            role_grant(user=self, role=role)


class StreetFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Street

    name = factory.Sequence(lambda n: f"街道{n}")
    district = "临平区"


class CommunityFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Community

    name = factory.Sequence(lambda n: f"社区{n}")
    street = factory.SubFactory(StreetFactory)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    community = factory.SubFactory(CommunityFactory)
    verified_at = factory.LazyFunction(timezone.now)


def make_coordinator(community: Community, *, street_level: bool = True) -> User:
    user = UserFactory(roles=[Role.COORDINATOR])
    CoordinatorPost.objects.create(
        user=user, street=community.street, community=None if street_level else community
    )
    return user


def make_expert() -> User:
    return UserFactory(roles=[Role.EXPERT])


def make_case(
    *,
    community: Community | None = None,
    applicant: User | None = None,
    respondent: User | None = None,
    category: str = "unpaid_wages",
    consents: dict[str, bool] | None = None,
    respondent_consents: dict[str, bool] | None = None,
) -> Case:
    """A registered case; the respondent has claimed their place when `respondent` is given."""
    community = community or CommunityFactory()
    applicant = applicant or UserFactory()
    respondent_phone = respondent.phone if respondent else f"+86137{Case.objects.count():08d}"
    case = services.case_register(
        reporter=applicant,
        category=category,
        description="老板拖欠工资三个月",
        community=community,
        applicant_name=applicant.display_name,
        respondent_name="李四",
        respondent_phone=respondent_phone,
        consents=consents
        if consents is not None
        else {"video": True, "livestream": True, "recording": True},
    )
    if respondent is not None:
        party = case.parties.get(role="respondent")
        services.party_claim(party=party, user=respondent)
        for kind, granted in (
            respondent_consents or {"video": True, "livestream": True, "recording": True}
        ).items():
            services.consent_set(party=party, actor=respondent, kind=kind, granted=granted)
    return case


def advance(
    case: Case, to: str, *, coordinator: User | None = None, expert: User | None = None
) -> Hearing | None:
    """Drive a case through the real services up to status `to`; returns the hearing if any."""
    coordinator = coordinator or make_coordinator(case.community)
    order = ["accepted", "matched", "scheduled", "in_session", "agreed"]
    hearing = None
    for step in order:
        case.refresh_from_db()
        if step == "accepted":
            services.case_accept(case=case, actor=coordinator)
        elif step == "matched":
            expert = expert or make_expert()
            services.case_match(case=case, expert=expert, actor=coordinator)
        elif step == "scheduled":
            start = timezone.now() + timedelta(hours=1)
            hearing = services.hearing_schedule(
                case=case, actor=coordinator, starts_at=start, ends_at=start + timedelta(hours=1)
            )
        elif step == "in_session":
            services.session_start(hearing=hearing, actor=case.expert)
        elif step == "agreed":
            services.session_conclude(hearing=hearing, actor=case.expert, agreed=True)
        if step == to:
            break
    case.refresh_from_db()
    return hearing
