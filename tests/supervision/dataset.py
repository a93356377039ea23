"""A small, hand-counted data set for the statistics tests: every step happens at a known time
through the real services, so each figure below can be checked with a pencil.

Times are Asia/Shanghai. t0 = Monday 2026-03-02 09:00. Street S1 has communities A and B;
street S2 has community C.

case  comm  category      path (time after t0)                                          outcome
c1    A     unpaid_wages  accept 2h, match 3h, schedule Mar 10 (matched stage late),    agreed
                          hearing held Mar 11 09:00 (9d), agreed +1h (9d 1h)
c2    A     neighbours    accept 3d (registered stage late), match 4d, schedule 4d1h,   not agreed
                          hearing held 7d
c3    B     property      accept 20h, match 2d, schedule 2d1h, held 5d, agreed 5d2h,    agreed
                          followed up 10d (on time)
c4    B     family        withdrawn 1h (no hearing)                                     withdrawn
c5    A     consumer      accept 1h, match 2h, schedule 3h, withdrawn 1d               withdrawn
                          (hearing cancelled, never held)
c6    A     other         still registered (overdue now)                                -
c7    C     unpaid_wages  accept 1h, match 2h, schedule 3h, held 2d, agreed 2d1h        agreed
c8    B     neighbours    registered 2026-01-15 10:00, declined next day 09:00          declined

Mediators: E1 handles c1, c2, c7; E2 handles c3, c5.
"Now" for the figures: 2026-03-22 12:00.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import time_machine

from accounts.services import role_grant
from mediation_room import services
from tests.factories import (
    CommunityFactory,
    UserFactory,
    make_case,
    make_coordinator,
)

SHANGHAI = ZoneInfo("Asia/Shanghai")
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=SHANGHAI)
NOW = datetime(2026, 3, 22, 12, 0, tzinfo=SHANGHAI)


def _at(moment: datetime):
    return time_machine.travel(moment, tick=False)


def _hearing(case, coordinator, when: datetime, starts: datetime):
    with _at(when):
        return services.hearing_schedule(
            case=case, actor=coordinator, starts_at=starts, ends_at=starts + timedelta(hours=2)
        )


def build() -> dict:
    a = CommunityFactory(name="A社区")
    b = CommunityFactory(name="B社区", street=a.street)
    c = CommunityFactory(name="C社区")
    street1 = make_coordinator(a, street_level=True)
    local_a = make_coordinator(a, street_level=False)
    street2 = make_coordinator(c, street_level=True)
    e1 = UserFactory(display_name="沈律师")
    e2 = UserFactory(display_name="陆调解员")
    for expert in (e1, e2):
        role_grant(user=expert, role="expert")
    h = timedelta(hours=1)
    d = timedelta(days=1)

    def new(community, category, when=T0):
        with _at(when):
            return make_case(community=community, category=category)

    def step(when, fn, **kwargs):
        with _at(when):
            return fn(**kwargs)

    # c1
    c1 = new(a, "unpaid_wages")
    step(T0 + 2 * h, services.case_accept, case=c1, actor=local_a)
    step(T0 + 3 * h, services.case_match, case=c1, expert=e1, actor=local_a)
    h1 = _hearing(c1, local_a, T0 + 8 * d, T0 + 9 * d)
    step(T0 + 9 * d, services.session_start, hearing=h1, actor=e1)
    step(T0 + 9 * d + h, services.session_conclude, hearing=h1, actor=e1, agreed=True)
    # c2
    c2 = new(a, "neighbours")
    step(T0 + 3 * d, services.case_accept, case=c2, actor=local_a)
    step(T0 + 4 * d, services.case_match, case=c2, expert=e1, actor=local_a)
    h2 = _hearing(c2, local_a, T0 + 4 * d + h, T0 + 7 * d)
    step(T0 + 7 * d, services.session_start, hearing=h2, actor=e1)
    step(T0 + 7 * d + h, services.session_conclude, hearing=h2, actor=e1, agreed=False)
    # c3
    c3 = new(b, "property")
    step(T0 + 20 * h, services.case_accept, case=c3, actor=street1)
    step(T0 + 2 * d, services.case_match, case=c3, expert=e2, actor=street1)
    h3 = _hearing(c3, street1, T0 + 2 * d + h, T0 + 5 * d)
    step(T0 + 5 * d, services.session_start, hearing=h3, actor=e2)
    step(T0 + 5 * d + 2 * h, services.session_conclude, hearing=h3, actor=e2, agreed=True)
    step(T0 + 10 * d, services.case_follow_up, case=c3, actor=street1)
    # c4
    c4 = new(b, "family")
    step(T0 + h, services.case_withdraw, case=c4, actor=c4.reporter)
    # c5
    c5 = new(a, "consumer")
    step(T0 + h, services.case_accept, case=c5, actor=local_a)
    step(T0 + 2 * h, services.case_match, case=c5, expert=e2, actor=local_a)
    _hearing(c5, local_a, T0 + 3 * h, T0 + 3 * d)
    step(T0 + d, services.case_withdraw, case=c5, actor=c5.reporter)
    # c6
    c6 = new(a, "other")
    # c7 (other street)
    c7 = new(c, "unpaid_wages")
    step(T0 + h, services.case_accept, case=c7, actor=street2)
    step(T0 + 2 * h, services.case_match, case=c7, expert=e1, actor=street2)
    h7 = _hearing(c7, street2, T0 + 3 * h, T0 + 2 * d)
    step(T0 + 2 * d, services.session_start, hearing=h7, actor=e1)
    step(T0 + 2 * d + h, services.session_conclude, hearing=h7, actor=e1, agreed=True)
    # c8 (January)
    jan = datetime(2026, 1, 15, 10, 0, tzinfo=SHANGHAI)
    c8 = new(b, "neighbours", when=jan)
    step(jan + 23 * h, services.case_decline, case=c8, actor=street1, reason="不属于调解范围")

    return {
        "communities": (a, b, c),
        "street1": street1,
        "local_a": local_a,
        "street2": street2,
        "experts": (e1, e2),
        "cases": (c1, c2, c3, c4, c5, c6, c7, c8),
    }
