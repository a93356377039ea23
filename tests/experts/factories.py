"""Factories for the expert pool."""

from __future__ import annotations

from datetime import time

import factory

from accounts.models import Role
from experts.models import AvailabilitySlot, ExpertKind, ExpertProfile, pack_codes
from experts.services import profile_week_hours_refresh
from tests.factories import UserFactory


class ExpertProfileFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ExpertProfile
        skip_postgeneration_save = True

    user = factory.SubFactory(UserFactory, roles=[Role.EXPERT])
    public_name = factory.Sequence(lambda n: f"专家{n:04d}")
    kind = ExpertKind.PEOPLES_MEDIATOR
    specialties = ""
    languages = pack_codes(["普通话"])
    load_cap = 5

    @factory.post_generation
    def serves(self, create, extracted, **kwargs):
        if extracted:
            self.communities.set(extracted)


def make_profile(
    *,
    specialties: list[str] | None = None,
    serves: list | None = None,
    languages: list[str] | None = None,
    slots: list[tuple[int, time, time]] | None = None,
    **kwargs,
) -> ExpertProfile:
    profile = ExpertProfileFactory(
        specialties=pack_codes(specialties or []),
        languages=pack_codes(languages or ["普通话"]),
        serves=serves or [],
        **kwargs,
    )
    for weekday, start, end in slots or []:
        AvailabilitySlot.objects.create(
            profile=profile, weekday=weekday, start_time=start, end_time=end
        )
    profile_week_hours_refresh(profile)
    profile.refresh_from_db()
    return profile
