"""What is on air: the members, their privacy choices, the banner and the broadcast state.

One :class:`Scene` is shared by the composite video track and the audio mixer so that a switch to
the slate (consent withdrawn, caucus, pause) reaches picture and sound on their next frame.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

from aiortc import MediaStreamTrack


class BroadcastState(enum.StrEnum):
    LIVE = "live"
    HOLD = "hold"
    ENDED = "ended"


class Role(enum.StrEnum):
    APPLICANT = "applicant"
    RESPONDENT = "respondent"
    MEDIATOR = "mediator"


# Viewers only ever see these role labels, never a party's name.
ROLE_LABELS = {
    Role.APPLICANT: "申请人",
    Role.RESPONDENT: "被申请人",
    Role.MEDIATOR: "调解员",
}
# Order of the tiles in the grid: the mediator first, then the parties.
ROLE_ORDER = {Role.MEDIATOR: 0, Role.APPLICANT: 1, Role.RESPONDENT: 2}

SLATE_TEXT = "本环节不公开"
ENDED_TEXT = "直播已结束"
# on air, but nobody is in the room yet: shown with the banner (category · community)
WAITING_TEXT = "调解即将开始"


@dataclass
class BroadcastMember:
    """A member of the room as the broadcast sees them.

    ``name`` is only ever drawn for the mediator (a public figure of the expert pool); a party's
    name is not even accepted here so it cannot leak onto the picture by mistake.
    """

    member_id: str
    role: Role
    video: MediaStreamTrack | None = None
    audio: MediaStreamTrack | None = None
    show_face: bool = False
    name: str = ""
    # the video is the member's screen share, which the mediator put on air: shown large
    screen: bool = False

    def __post_init__(self) -> None:
        self.role = Role(self.role)
        if self.role is not Role.MEDIATOR:
            self.name = ""

    @property
    def label(self) -> str:
        label = ROLE_LABELS[self.role]
        if self.role is Role.MEDIATOR and self.name:
            label = f"{label} · {self.name}"
        return f"{label} · 屏幕共享" if self.screen else label

    @property
    def hides_face(self) -> bool:
        # The expert is never blurred; a party is, unless they chose to show their face.
        return self.role is not Role.MEDIATOR and not self.show_face

    @property
    def is_party(self) -> bool:
        return self.role is not Role.MEDIATOR


@dataclass
class Scene:
    category: str = ""
    community: str = ""
    state: BroadcastState = BroadcastState.HOLD
    pitch_shift: float | None = None
    members: list[BroadcastMember] = field(default_factory=list)
    # Bumped on every change so the tracks know when to rebuild their readers and layout.
    version: int = 0
    changed_at: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.state = BroadcastState(self.state)
        if self.members:
            self.set_members(list(self.members))

    @property
    def banner(self) -> str:
        return " · ".join(part for part in (self.category, self.community) if part)

    @property
    def on_air(self) -> bool:
        return self.state is BroadcastState.LIVE

    @property
    def waiting(self) -> bool:
        """On air with nobody in the room yet: a waiting picture, never an empty one."""
        return self.on_air and not self.members

    def set_state(self, state: BroadcastState | str) -> None:
        state = BroadcastState(state)
        if state is not self.state:
            self.state = state
            self._touch()

    def set_members(self, members: list[BroadcastMember]) -> None:
        self.members = sorted(members, key=lambda m: (ROLE_ORDER[m.role], m.member_id))
        self._touch()

    def _touch(self) -> None:
        self.version += 1
        self.changed_at = time.monotonic()
