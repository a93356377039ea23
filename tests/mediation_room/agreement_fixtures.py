"""Shared setup of the agreement tests: a case in session with both parties signed in, and the
way a signer gets their SMS code (read back from the console SMS outbox, as a phone would)."""

from __future__ import annotations

import base64
import io
import re
from datetime import date, timedelta

import pytest
from django.utils import timezone
from PIL import Image, ImageDraw

from accounts.models import SmsOutboxMessage
from mediation_room.agreements import services
from mediation_room.agreements.models import Agreement
from tests.factories import UserFactory, advance, make_case, make_coordinator, make_expert

CODE = re.compile(r"(?<![-\d])(\d{6})(?!\d)")


def signature_png(text: str = "张三") -> str:
    image = Image.new("RGB", (300, 100), "white")
    draw = ImageDraw.Draw(image)
    draw.line((10, 80, 120, 20, 200, 70, 290, 30), fill="black", width=4)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def last_code(user) -> str:
    message = SmsOutboxMessage.objects.filter(phone=user.phone).order_by("-pk").first()
    assert message is not None, "no SMS was sent"
    return CODE.findall(message.body)[-1]


def send_code(agreement: Agreement, user, capture=None) -> str:
    """Ask for a signing code and read it from the outbox. Under the `db` fixture, pass
    django_capture_on_commit_callbacks so the delivery (after commit) runs."""
    if capture is not None:
        with capture(execute=True):
            services.signing_code_send(agreement=agreement, actor=user)
    else:
        services.signing_code_send(agreement=agreement, actor=user)
    return last_code(user)


class Setup:
    def __init__(self):
        self.applicant = UserFactory(display_name="张三")
        self.respondent = UserFactory(display_name="李四")
        self.expert = make_expert()
        self.case = make_case(applicant=self.applicant, respondent=self.respondent)
        self.coordinator = make_coordinator(self.case.community)
        self.hearing = advance(
            self.case, "in_session", coordinator=self.coordinator, expert=self.expert
        )
        self.case.refresh_from_db()

    @property
    def signers(self):
        return [self.applicant, self.respondent, self.expert]

    def draft(self, *, due: date | None = None, amount: str = "12000", **kwargs) -> Agreement:
        agreement = services.agreement_start(case=self.case, actor=self.expert)
        due = due or (timezone.localdate() + timedelta(days=10))
        services.agreement_save_draft(
            agreement=agreement,
            actor=self.expert,
            facts="申请人在被申请人的装修队务工三个月，被申请人尚欠工资一万二千元。",
            terms=kwargs.get("terms")
            or [
                {
                    "key": "t1",
                    "obligor": "respondent",
                    "action": "向申请人支付拖欠工资",
                    "amount": amount,
                    "due_date": due.isoformat(),
                },
                {
                    "key": "t2",
                    "obligor": "applicant",
                    "action": "收到款项后出具收条",
                    "amount": "",
                    "due_date": "",
                },
            ],
            performance_check="银行转账，申请人收到后确认。",
        )
        return agreement

    def submitted(self, **kwargs) -> Agreement:
        agreement = self.draft(**kwargs)
        services.agreement_submit(agreement=agreement, actor=self.expert)
        agreement.refresh_from_db()
        return agreement

    def sign(self, agreement: Agreement, user, capture=None, **kwargs):
        """Ask for a code and sign with it; with `capture`, after-commit work (SMS delivery,
        the PDF once the last signature is in) runs as it would outside a test transaction."""
        code = send_code(agreement, user, capture)
        agreement.refresh_from_db()

        def call():
            return services.agreement_sign(
                agreement=agreement,
                actor=user,
                version_number=agreement.final_version.number,
                code=code,
                signature_data_url=kwargs.get("signature", signature_png()),
                typed_name=kwargs.get("typed_name", ""),
                ip="203.0.113.7",
                user_agent="pytest",
            )

        if capture is None:
            return call()
        with capture(execute=True):
            return call()

    def locked(self, capture=None, **kwargs) -> Agreement:
        agreement = self.submitted(**kwargs)
        for user in self.signers:
            self.sign(agreement, user, capture)
        agreement.refresh_from_db()
        return agreement


@pytest.fixture
def media_root(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    return tmp_path


@pytest.fixture
def setup(db, media_root) -> Setup:
    return Setup()


@pytest.fixture
def tsetup(transactional_db, media_root) -> Setup:
    return Setup()
