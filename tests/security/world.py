"""Two cases in two streets, with every kind of object a page or socket can point at, and one
user for each role of the authorisation matrix.

Case A (street 1) is the case under test: its applicant is "party", its mediator "expert", the
street-level coordinator of street 1 "coord". Case B (street 2) supplies the strangers who hold
the same roles elsewhere: "o_party", "o_expert", "o_coord"."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import time, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import AnonymousUser
from django.core.files.base import ContentFile
from django.test import Client, TestCase
from django.utils import timezone

from accounts.models import Notification, Role, User
from experts.models import AvailabilityException, AvailabilitySlot, Invitation
from experts.services import invitation_send
from mediation_room import services as case_services
from mediation_room.agreements import services as agreement_services
from mediation_room.models import SupervisionNotice
from privacy.models import ConsentReceipt, LegalHold
from privacy.sealed import SealedWriter
from streaming.models import Evidence, Recording
from tests.experts.factories import make_profile
from tests.factories import (
    CommunityFactory,
    MembershipFactory,
    UserFactory,
    advance,
    make_case,
    make_coordinator,
)
from tests.mediation_room.agreement_fixtures import signature_png
from voting.models import Comment, Consultation, ConsultationOption, Panel, Poll, PollOption
from voting.services import bench_panel, rooms

# Columns of every matrix, in order.
ROLES = (
    "anon",
    "viewer",
    "party",
    "expert",
    "coord",
    "o_party",
    "o_expert",
    "o_coord",
    "moderator",
    "admin",
)

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00"
    b"\x1f\x15\xc4\x89\x00\x00\x00\rIDATx\x9cc\xf8\x0f\x00\x00\x01\x01\x00\x05\x18\xd8N\x00\x00"
    b"\x00\x00IEND\xaeB`\x82"
)


@dataclass
class World:
    users: dict[str, User | AnonymousUser] = field(default_factory=dict)
    objects: dict[str, object] = field(default_factory=dict)
    # each signed-in role's session key, made once with the world (a cell rolls back whatever a
    # request did to it, so the next cell finds it as it was)
    sessions: dict[str, str] = field(default_factory=dict)

    def client(self, role: str, **options) -> Client:
        """A test client signed in as ``role`` ("anon": not signed in)."""
        client = Client(**options)
        if role != "anon":
            client.cookies[settings.SESSION_COOKIE_NAME] = self.sessions[role]
        return client

    def __getattr__(self, name: str):
        try:
            return self.objects[name]
        except KeyError:
            raise AttributeError(name) from None


def _expert_user() -> User:
    user = UserFactory(roles=[Role.EXPERT])
    make_profile(user=user, slots=[(d, time(8), time(20)) for d in range(7)])
    return user


def _sign_all(case, expert, applicant, respondent):
    agreement = agreement_services.agreement_start(case=case, actor=expert)
    due = timezone.localdate() + timedelta(days=10)
    agreement_services.agreement_save_draft(
        agreement=agreement,
        actor=expert,
        facts="申请人务工三个月，被申请人尚欠工资一万二千元。",
        terms=[
            {
                "key": "t1",
                "obligor": "respondent",
                "action": "向申请人支付拖欠工资",
                "amount": "12000",
                "due_date": due.isoformat(),
            }
        ],
        performance_check="银行转账。",
    )
    agreement_services.agreement_submit(agreement=agreement, actor=expert)
    from tests.mediation_room.agreement_fixtures import last_code

    for user in (applicant, respondent, expert):
        agreement.refresh_from_db()
        # the SMS goes out after commit: run that now, as the phone would receive it
        with TestCase.captureOnCommitCallbacks(execute=True):
            agreement_services.signing_code_send(agreement=agreement, actor=user)
        agreement.refresh_from_db()
        agreement_services.agreement_sign(
            agreement=agreement,
            actor=user,
            version_number=agreement.final_version.number,
            code=last_code(user),
            signature_data_url=signature_png(),
            typed_name="",
            ip="203.0.113.7",
            user_agent="pytest",
        )
    agreement.refresh_from_db()
    agreement_services.agreement_pdf_render(agreement_id=agreement.pk)
    agreement.refresh_from_db()
    return agreement


def build_world(media_root: Path, *, agreed: bool = True) -> World:
    """With agreed=False case A stays in session (its room open) and has no agreement."""
    w = World()
    street_a = CommunityFactory()
    community_b = CommunityFactory()  # another street
    coord = make_coordinator(street_a)
    o_coord = make_coordinator(community_b)
    party, respondent, expert = UserFactory(), UserFactory(), _expert_user()
    o_party, o_expert = UserFactory(), _expert_user()
    for user in (party, respondent):
        MembershipFactory(user=user, community=street_a)
    viewer = UserFactory()
    MembershipFactory(user=viewer, community=street_a)
    moderator = UserFactory(roles=[Role.MODERATOR])
    admin = UserFactory(is_superuser=True, is_staff=True)
    w.users = {
        "anon": AnonymousUser(),
        "viewer": viewer,
        "party": party,
        "expert": expert,
        "coord": coord,
        "o_party": o_party,
        "o_expert": o_expert,
        "o_coord": o_coord,
        "moderator": moderator,
        "admin": admin,
    }

    # case A: in session, livestreamed, agreement signed by everyone
    case = make_case(community=street_a, applicant=party, respondent=respondent)
    hearing = advance(case, "in_session", coordinator=coord, expert=expert)
    room = rooms.room_for_hearing(hearing)
    poll = Poll.objects.create(room=room, question="方案公平吗？", created_by=expert)
    for position, text in enumerate(["公平", "不公平"]):
        PollOption.objects.create(poll=poll, position=position, text=text)
    evidence = Evidence(
        case=case,
        hearing=hearing,
        uploaded_by=party,
        uploader_role="applicant",
        title="工资条",
        content_type="image/png",
        size=len(PNG),
        sha256=hashlib.sha256(PNG).hexdigest(),
    )
    evidence.file.save("slip.png", ContentFile(PNG), save=True)
    recording_path = media_root / "recordings" / f"{hearing.public_id}.mkv"
    recording_path.parent.mkdir(parents=True, exist_ok=True)
    with SealedWriter(recording_path) as sealed:
        sealed.write(b"\x1a\x45\xdf\xa3" + b"\0" * 64)
    recording = Recording.objects.create(
        hearing=hearing,
        file=str(recording_path.relative_to(media_root)),
        sha256=sealed.sha256,
        duration=1.0,
        size=68,
        started_at=timezone.now(),
    )
    hls_dir = media_root / "hls" / hearing.public_id
    hls_dir.mkdir(parents=True, exist_ok=True)
    (hls_dir / "live.m3u8").write_text("#EXTM3U\n")
    agreement = _sign_all(case, expert, party, respondent) if agreed else None
    case.refresh_from_db()
    seed = "ab" * 32
    panel = Panel.objects.create(
        case=case,
        size=3,
        seed=seed,
        commitment=bench_panel.commitment_of(seed),
        committed_at=timezone.now(),
    )
    consultation = Consultation.objects.create(
        community=street_a,
        title="小区停车位",
        body="是否增加停车位",
        created_by=coord,
        deadline=timezone.now() + timedelta(days=3),
    )
    for position, text in enumerate(["同意", "反对"]):
        ConsultationOption.objects.create(consultation=consultation, position=position, text=text)
    notice = SupervisionNotice.objects.create(
        case=case,
        issued_by=coord,
        to_user=expert,
        text="请尽快回访",
        due=timezone.now() + timedelta(days=2),
    )
    hold = LegalHold.objects.create(
        case=case, kind=LegalHold.Kind.COORDINATOR, reason="信访未结", placed_by=coord
    )
    comment_of_party = Comment.objects.create(
        room=room, author=party, client_id="p1", nickname="甲方", text="我同意"
    )
    notification = Notification.objects.filter(user=party).first()
    assert notification is not None
    slot = AvailabilitySlot.objects.filter(profile__user=expert).first()
    exception = AvailabilityException.objects.create(
        profile=expert.expert_profile, date=timezone.localdate() + timedelta(days=30)
    )

    # case C (street 1): accepted and offered to the same expert, who has not answered
    case_c = make_case(community=street_a, respondent=UserFactory())
    case_services.case_accept(case=case_c, actor=coord)
    invitation = invitation_send(case=case_c, actor=coord, expert=expert.expert_profile)

    # case B (street 2): the strangers' own case
    case_b = make_case(community=community_b, applicant=o_party, respondent=UserFactory())
    hearing_b = advance(case_b, "scheduled", coordinator=o_coord, expert=o_expert)

    w.objects = {
        "case": case,
        "hearing": hearing,
        "room": room,
        "poll": poll,
        "evidence": evidence,
        "recording": recording,
        "agreement": agreement,
        "follow_up": agreement.follow_ups.first() if agreement else None,
        "panel": panel,
        "consultation": consultation,
        "notice": notice,
        "notification": notification,
        "hold": hold,
        "receipt": ConsentReceipt.objects.filter(party__user=party).first(),
        "comment_of_party": comment_of_party,
        "slot": slot,
        "exception": exception,
        "case_c": case_c,
        "invitation": invitation,
        "respondent_party": case.parties.get(role="respondent"),
        "case_b": case_b,
        "hearing_b": hearing_b,
        "expert_profile": expert.expert_profile,
    }
    assert isinstance(invitation, Invitation)
    for role, user in w.users.items():
        if user.is_authenticated:
            login = Client()
            login.force_login(user)
            w.sessions[role] = login.cookies[settings.SESSION_COOKIE_NAME].value
    return w
