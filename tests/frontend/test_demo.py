"""What a newcomer sees after `make demo`: every agreed, followed-up and closed demo case has its
signed, locked agreement (ledger entry, PDF), and one finished public hearing has a replay with
comments."""

from __future__ import annotations

import re
from io import StringIO

import pytest
from django.core.management import call_command

from mediation_room.agreements.models import Agreement
from mediation_room.models import Case, Status

pytestmark = pytest.mark.django_db


def test_demo_agreements_verify_and_a_replay_has_its_comments(settings, tmp_path, client):
    settings.MEDIA_ROOT = tmp_path / "media"
    settings.BROADCAST_HLS_ROOT = settings.MEDIA_ROOT / "hls"
    printed = StringIO()
    call_command("demo_data", stdout=printed)

    verified = StringIO()
    call_command("verify_agreements", stdout=verified)
    count = int(re.search(r"(\d+) agreements verified", verified.getvalue()).group(1))
    concluded = Case.objects.filter(status__in=[Status.AGREED, Status.FOLLOWED_UP, Status.CLOSED])
    assert concluded.count() >= 3
    assert count >= concluded.count()
    for case in concluded:
        agreement = Agreement.objects.get(case=case)
        assert agreement.state == Agreement.State.LOCKED and agreement.seq and agreement.hash
        assert agreement.pdf and (settings.MEDIA_ROOT / agreement.pdf.name).exists()
        assert agreement.signatures.count() == 3

    replay = re.search(r"replay with comments: (/watch/[\w-]+/replay/)", printed.getvalue())
    assert replay, printed.getvalue()
    page = client.get(replay.group(1))
    assert page.status_code == 200
    assert "分两期付款这个办法好" in page.content.decode()
