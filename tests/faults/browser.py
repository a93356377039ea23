"""What the fault tests read from a page (the same scripts a person would watch)."""

from __future__ import annotations

import time

REMOTE_PLAYING = """() => [...document.querySelectorAll('video.remote')]
    .some(v => v.videoWidth > 0 && v.currentTime > 0.2)"""
REMOTE_TIME = """() => Math.max(0, ...[...document.querySelectorAll('video.remote')]
    .filter(v => v.videoWidth > 0).map(v => v.currentTime))"""
PLAYER_TIME = "() => document.getElementById('player').currentTime"
LIVE_PANEL_UP = """() => { const p = document.getElementById('live-panel');
    return p.querySelector('.live-status').textContent === p.dataset.tLive; }"""
COMMENT_TEXTS = """() => [...document.querySelectorAll('#live-panel .comments li:not(.empty) .text')]
    .map(el => el.textContent)"""


def advancing(page, script: str, *, within: float = 20.0) -> bool:
    """Whether the media time read by `script` moves on by a second (the picture is not frozen)
    before `within` seconds have passed."""
    before = page.evaluate(script)
    give_up = time.monotonic() + within
    while time.monotonic() < give_up:
        if page.evaluate(script) > before + 1.0:
            return True
        time.sleep(0.25)
    return False


def post_comment(page, text: str) -> None:
    page.fill("#comment-text", text)
    page.click("#live-panel .comment-form button[type=submit]")
