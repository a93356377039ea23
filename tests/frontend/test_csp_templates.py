"""Every page runs under a CSP without 'unsafe-inline': no template may carry inline script,
inline event handlers or style attributes."""

import re
from pathlib import Path

from django.conf import settings

INLINE_HANDLER = re.compile(r"<[^>]*\son[a-z]+\s*=", re.I)
INLINE_SCRIPT = re.compile(r"<script(?![^>]*\bsrc=)(?![^>]*type=\"application/json\")[^>]*>", re.I)
STYLE_ATTR = re.compile(r"<[^>]*\sstyle\s*=", re.I)
APPS = ["accounts", "mediation_room", "experts", "streaming", "voting", "frontend"]


def _templates():
    for app in APPS:
        yield from (Path(settings.BASE_DIR) / app).glob("templates/**/*.html")


def test_templates_have_no_inline_script_or_style():
    offenders = []
    for path in _templates():
        text = path.read_text(encoding="utf-8")
        for pattern in (INLINE_HANDLER, INLINE_SCRIPT, STYLE_ATTR):
            if pattern.search(text):
                offenders.append(f"{path.relative_to(settings.BASE_DIR)}: {pattern.pattern}")
    assert offenders == []
