"""Every setting the code reads is declared in cloudbench/settings.py and listed in .env.example."""

import re
from pathlib import Path

import pytest

from cloudbench import settings as project_settings

ROOT = Path(__file__).resolve().parent.parent
APPS = ["accounts", "cloudbench", "experts", "frontend", "mediation_room", "streaming", "voting"]


def _sources():
    for app in APPS:
        for path in (ROOT / app).rglob("*.py"):
            if "migrations" not in path.parts:
                yield path


def test_no_setting_is_read_with_a_fallback_default():
    offenders = [
        str(path.relative_to(ROOT))
        for path in _sources()
        if re.search(r"getattr\(\s*settings\s*,", path.read_text())
    ]
    assert offenders == []


@pytest.mark.parametrize(
    "name",
    [
        "STAGE_DEADLINE_DAYS_BY_CATEGORY",
        "SUPERVISION_ESCALATE_AFTER_DAYS",
        "STATS_AGREEMENT_PERFORMANCE",
        "EXPERT_INVITATION_TTL_MINUTES",
        "EXPERT_IMPORT_MAX_BYTES",
        "VOTING_USER_COMMENT_LIMIT",
        "VOTING_CONNECTION_MESSAGE_LIMIT",
        "VOTING_BATCH_MS",
    ],
)
def test_the_settings_are_declared_and_listed(name):
    assert hasattr(project_settings, name)
    assert re.search(rf"^{name}=", (ROOT / ".env.example").read_text(), re.MULTILINE)


def test_a_rate_is_read_as_hits_per_seconds(monkeypatch):
    monkeypatch.setenv("SOME_RATE", "45/15")
    assert project_settings.env_rate("SOME_RATE", (1, 1)) == (45, 15)
    monkeypatch.delenv("SOME_RATE")
    assert project_settings.env_rate("SOME_RATE", (10, 30)) == (10, 30)
