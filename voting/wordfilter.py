"""Sensitive-word matching with an Aho–Corasick automaton (pyahocorasick), Chinese and English.

Text and words are normalised the same way (NFKC folds full-width letters, casefold folds case)
and spaces and punctuation are dropped, so "Ｆ Ｏ Ｏ" matches "foo". Each process keeps its own
automaton and rebuilds it when the list's version number in the shared cache changes (a
coordinator's edit reaches every process within a couple of seconds)."""

from __future__ import annotations

import threading
import time
import unicodedata

import ahocorasick
from django.core.cache import cache

VERSION_KEY = "voting:words:version"
RECHECK_SECONDS = 2.0

_lock = threading.Lock()
_state: dict = {"version": None, "checked": 0.0, "automaton": None}


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(ch for ch in text if unicodedata.category(ch)[0] in ("L", "N"))


def bump_version() -> None:
    """Call after the list changes (on commit)."""
    try:
        cache.incr(VERSION_KEY)
    except ValueError:
        cache.set(VERSION_KEY, 1, timeout=None)


def _build() -> ahocorasick.Automaton | None:
    from .models import SensitiveWord

    automaton = ahocorasick.Automaton()
    count = 0
    for word in SensitiveWord.objects.values_list("word", flat=True):
        key = normalise(word)
        if key:
            automaton.add_word(key, word)
            count += 1
    if not count:
        return None
    automaton.make_automaton()
    return automaton


def _automaton() -> ahocorasick.Automaton | None:
    now = time.monotonic()
    with _lock:
        if _state["checked"] and now - _state["checked"] < RECHECK_SECONDS:
            return _state["automaton"]
        version = cache.get(VERSION_KEY)
        if version != _state["version"] or _state["automaton"] is None and not _state["checked"]:
            _state["automaton"] = _build()
            _state["version"] = version
        _state["checked"] = now
        return _state["automaton"]


def reset() -> None:
    with _lock:
        _state.update(version=None, checked=0.0, automaton=None)


def find(text: str) -> list[str]:
    """The listed words found in `text` (as they are written in the list), first match first."""
    automaton = _automaton()
    if automaton is None:
        return []
    found: list[str] = []
    for _end, word in automaton.iter(normalise(text)):
        if word not in found:
            found.append(word)
    return found
