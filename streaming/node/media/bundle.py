"""A browser's bundled offer, made readable for aiortc (see ``bundled_candidates``)."""

from __future__ import annotations

import re

_SECTION = re.compile(r"(?m)^(?=m=)")
_CANDIDATE = ("a=candidate:", "a=end-of-candidates")


def bundled_candidates(offer_sdp: str) -> str:
    """``offer_sdp`` with the candidates of each BUNDLE group on every m-section of the group.

    A browser bundles all its media on one transport and lists that transport's candidates on
    the group's first m-section only (Chromium never repeats them). aiortc gives a transport the
    candidates of the *last* m-section that uses it (``setRemoteDescription`` keeps one section
    per transport, the last one seen), and the node's sections all share one transport
    (``max-bundle``): so the node knew none of the browser's candidates. Over direct paths that
    went unnoticed, as the browser's checks arrive and the node learns its address from them
    (peer-reflexive). Through TURN it cannot work: the node's relay (coturn, and aioice's own
    client) lets in only peers the node has sent to, and the node never sends to a candidate it
    does not know, so neither side's checks get through.
    """
    head, *sections = _SECTION.split(offer_sdp)
    if not sections:
        return offer_sdp
    eol = "\r\n" if "\r\n" in offer_sdp else "\n"
    mids = [_mid(section) for section in sections]
    groups = [
        line.split()[1:]
        for line in head.splitlines()
        if line.startswith("a=group:BUNDLE ") and len(line.split()) > 2
    ]
    for group in groups:
        members = [i for i, mid in enumerate(mids) if mid in group]
        candidates: list[str] = []
        complete = False
        for i in members:
            for line in sections[i].splitlines():
                if line.startswith("a=candidate:") and line not in candidates:
                    candidates.append(line)
                complete = complete or line == "a=end-of-candidates"
        if not candidates:
            continue
        lines = candidates + (["a=end-of-candidates"] if complete else [])
        for i in members:
            kept = [line for line in sections[i].splitlines() if not line.startswith(_CANDIDATE)]
            sections[i] = eol.join(kept + lines) + eol
    return head + "".join(sections)


def _mid(section: str) -> str | None:
    for line in section.splitlines():
        if line.startswith("a=mid:"):
            return line[len("a=mid:") :].strip()
    return None
