"""What the audience says and decides: live comments and their moderation, polls, the bench panel
(板凳评议团), the parties' ratings of a mediation, and community consultations (民主协商议事).

A live room is a Hearing (its public id names the room). Every event broadcast to a room is also
stored as a RoomEvent with a per-room sequence number, so a client that missed some can fetch them.
"""

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import Community, TimeStamped
from mediation_room.models import Case, Hearing, Party


def new_code() -> str:
    return secrets.token_hex(4).upper()


class Room(TimeStamped):
    """The audience side of a hearing: its moderation settings and its event counter.

    `last_seq` is advanced under a row lock in the transaction that stores the event, so events
    commit in sequence order and a reader of `…/events?after=n` never sees n+2 before n+1."""

    hearing = models.OneToOneField(Hearing, on_delete=models.CASCADE, related_name="room")
    last_seq = models.PositiveBigIntegerField(default=0)
    slow_mode_seconds = models.PositiveSmallIntegerField(
        _("slow mode (seconds between comments, 0 = off)"), default=0
    )
    review_all = models.BooleanField(_("hold every comment for review"), default=False)
    comments_open = models.BooleanField(default=True)

    def __str__(self) -> str:
        return f"room {self.hearing.public_id}"


class RoomEvent(models.Model):
    """One broadcast event, exactly as sent (the JSON text), in sequence order."""

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="events")
    seq = models.PositiveBigIntegerField()
    kind = models.CharField(max_length=30)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["room", "seq"]
        constraints = [models.UniqueConstraint(fields=["room", "seq"], name="uniq_room_seq")]

    def __str__(self) -> str:
        return f"{self.room_id}#{self.seq} {self.kind}"


class Comment(TimeStamped):
    class State(models.TextChoices):
        VISIBLE = "visible", _("Shown")
        HELD = "held", _("Held for review")
        REJECTED = "rejected", _("Rejected")
        DELETED = "deleted", _("Deleted")

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="comments")
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="live_comments"
    )
    # Chosen by the browser; a comment resent after a reconnect carries the same id.
    client_id = models.CharField(max_length=64)
    nickname = models.CharField(max_length=40)
    text = models.CharField(max_length=500)
    state = models.CharField(max_length=10, choices=State.choices, default=State.VISIBLE)
    hold_reason = models.CharField(max_length=100, blank=True)
    # Milliseconds since the session started (or since the room opened), for replays.
    offset_ms = models.BigIntegerField(default=0)
    seq = models.PositiveBigIntegerField(null=True, blank=True)

    class Meta:
        ordering = ["room", "created_at", "pk"]
        indexes = [models.Index(fields=["room", "state", "created_at"])]
        constraints = [
            models.UniqueConstraint(
                fields=["room", "author", "client_id"], name="uniq_comment_client_id"
            ),
            models.CheckConstraint(
                condition=Q(state__in=["visible", "held", "rejected", "deleted"]),
                name="comment_state_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"comment {self.pk} ({self.state})"


class SensitiveWord(TimeStamped):
    """A word or phrase that holds a comment for review. Matching ignores case and width."""

    word = models.CharField(_("word or phrase"), max_length=60, unique=True)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        ordering = ["word"]

    def __str__(self) -> str:
        return self.word


class RoomMute(TimeStamped):
    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="mutes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=200)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["room", "user"], name="uniq_room_mute")]


class CommentBan(TimeStamped):
    """Banned from commenting anywhere on the platform until lifted."""

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="comment_ban"
    )
    by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    reason = models.CharField(max_length=200)


class ModerationAction(models.Model):
    """Append-only log: every moderation decision, who made it and why."""

    class Kind(models.TextChoices):
        APPROVE = "approve", _("Approved a held comment")
        REJECT = "reject", _("Rejected a held comment")
        DELETE = "delete", _("Deleted a comment")
        MUTE = "mute", _("Muted a user in the room")
        UNMUTE = "unmute", _("Unmuted a user")
        BAN = "ban", _("Banned a user from commenting")
        UNBAN = "unban", _("Lifted a ban")
        SETTINGS = "settings", _("Changed room settings")
        WORD_ADD = "word_add", _("Added a sensitive word")
        WORD_REMOVE = "word_remove", _("Removed a sensitive word")

    room = models.ForeignKey(
        Room, null=True, blank=True, on_delete=models.CASCADE, related_name="actions"
    )
    moderator = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    kind = models.CharField(max_length=20, choices=Kind.choices)
    target_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    comment = models.ForeignKey(
        Comment, null=True, blank=True, on_delete=models.SET_NULL, related_name="actions"
    )
    reason = models.CharField(max_length=200)
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.kind} by {self.moderator_id}"


# --- polls ----------------------------------------------------------------------------------------


class Poll(TimeStamped):
    class State(models.TextChoices):
        OPEN = "open", _("Open")
        CLOSED = "closed", _("Closed")

    class Results(models.TextChoices):
        LIVE = "live", _("Show results while voting")
        AFTER_CLOSE = "after_close", _("Show results after closing")

    room = models.ForeignKey(Room, on_delete=models.CASCADE, related_name="polls")
    public_id = models.CharField(max_length=16, unique=True, default=new_code)
    question = models.CharField(max_length=200)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    state = models.CharField(max_length=8, choices=State.choices, default=State.OPEN)
    results = models.CharField(max_length=12, choices=Results.choices, default=Results.LIVE)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return self.question

    @property
    def results_visible(self) -> bool:
        return self.results == self.Results.LIVE or self.state == self.State.CLOSED


class PollOption(models.Model):
    poll = models.ForeignKey(Poll, on_delete=models.CASCADE, related_name="options")
    position = models.PositiveSmallIntegerField()
    text = models.CharField(max_length=80)

    class Meta:
        ordering = ["poll", "position"]
        constraints = [
            models.UniqueConstraint(fields=["poll", "position"], name="uniq_poll_option_pos")
        ]

    def __str__(self) -> str:
        return self.text


class PollVote(models.Model):
    poll = models.ForeignKey(Poll, on_delete=models.CASCADE, related_name="votes")
    option = models.ForeignKey(PollOption, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["poll", "user"], name="one_vote_per_user_per_poll")
        ]

    def __str__(self) -> str:
        return f"vote {self.poll_id}/{self.option_id}"


# --- bench panel (板凳评议团) ----------------------------------------------------------------------


class PanelVolunteer(TimeStamped):
    """A verified resident who offered to sit on bench panels of their community.

    `code` is the only thing published about them: the eligible list and the drawn panel are
    lists of codes, so anyone can check the draw while names stay private."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="panel_volunteering"
    )
    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    code = models.CharField(max_length=12, unique=True, default=new_code)
    active = models.BooleanField(default=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "community"], name="uniq_volunteer")]

    def __str__(self) -> str:
        return self.code


class Panel(TimeStamped):
    """The panel of one case. Committed first (eligible list frozen, SHA-256 of the secret seed
    published), then drawn (seed revealed, panelists chosen by a rule anyone can recompute)."""

    class State(models.TextChoices):
        COMMITTED = "committed", _("Commitment published")
        DRAWN = "drawn", _("Drawn")
        SUMMARISED = "summarised", _("Summary published")

    case = models.OneToOneField(Case, on_delete=models.CASCADE, related_name="panel")
    public_id = models.CharField(max_length=16, unique=True, default=new_code)
    size = models.PositiveSmallIntegerField()
    commitment = models.CharField(max_length=64)
    seed = models.CharField(max_length=64)
    seed_revealed = models.BooleanField(default=False)
    eligible_codes = models.JSONField(default=list)
    drawn_codes = models.JSONField(default=list)
    state = models.CharField(max_length=12, choices=State.choices, default=State.COMMITTED)
    committed_at = models.DateTimeField()
    drawn_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"panel {self.public_id}"


class Panelist(TimeStamped):
    panel = models.ForeignKey(Panel, on_delete=models.CASCADE, related_name="panelists")
    volunteer = models.ForeignKey(PanelVolunteer, on_delete=models.PROTECT, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    position = models.PositiveSmallIntegerField()

    class Meta:
        ordering = ["panel", "position"]
        constraints = [
            models.UniqueConstraint(fields=["panel", "user"], name="uniq_panelist"),
            models.UniqueConstraint(fields=["panel", "position"], name="uniq_panelist_pos"),
        ]


class Verdict(models.TextChoices):
    FAIR = "fair", _("Fair")
    MOSTLY_FAIR = "mostly_fair", _("Basically fair")
    UNFAIR = "unfair", _("Unfair")


class PanelEvaluation(TimeStamped):
    panelist = models.OneToOneField(Panelist, on_delete=models.CASCADE, related_name="evaluation")
    verdict = models.CharField(max_length=12, choices=Verdict.choices)
    reason = models.CharField(max_length=300)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(verdict__in=["fair", "mostly_fair", "unfair"]),
                name="panel_verdict_valid",
            )
        ]


# --- the parties' rating of a mediation (可评价) ---------------------------------------------------


class MediationRating(TimeStamped):
    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="ratings")
    party = models.OneToOneField(Party, on_delete=models.CASCADE, related_name="rating")
    expert = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="mediation_ratings"
    )
    score = models.PositiveSmallIntegerField()
    comment = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.CheckConstraint(
                condition=Q(score__gte=1, score__lte=5), name="rating_score_1_to_5"
            ),
        ]


# --- community consultations (民主协商议事) --------------------------------------------------------


class Consultation(TimeStamped):
    class State(models.TextChoices):
        OPEN = "open", _("Open for votes")
        PUBLISHED = "published", _("Result published")

    community = models.ForeignKey(Community, on_delete=models.CASCADE, related_name="+")
    public_id = models.CharField(max_length=16, unique=True, default=new_code)
    title = models.CharField(_("matter"), max_length=120)
    body = models.TextField(_("details"), max_length=4000)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    hearing = models.ForeignKey(
        Hearing,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=_("A streamed discussion session, if there is one."),
    )
    deadline = models.DateTimeField(_("voting closes"))
    quorum = models.PositiveIntegerField(_("quorum (votes needed for a valid result)"), default=1)
    state = models.CharField(max_length=10, choices=State.choices, default=State.OPEN)
    result = models.JSONField(default=dict, blank=True)
    published_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.CheckConstraint(condition=Q(quorum__gte=1), name="quorum_positive")]

    def __str__(self) -> str:
        return self.title


class ConsultationOption(models.Model):
    consultation = models.ForeignKey(Consultation, on_delete=models.CASCADE, related_name="options")
    position = models.PositiveSmallIntegerField()
    text = models.CharField(max_length=80)

    class Meta:
        ordering = ["consultation", "position"]
        constraints = [
            models.UniqueConstraint(
                fields=["consultation", "position"], name="uniq_consultation_option_pos"
            )
        ]

    def __str__(self) -> str:
        return self.text


class ConsultationVote(models.Model):
    consultation = models.ForeignKey(Consultation, on_delete=models.CASCADE, related_name="votes")
    option = models.ForeignKey(ConsultationOption, on_delete=models.CASCADE, related_name="votes")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["consultation", "user"], name="one_vote_per_resident_per_consultation"
            )
        ]

    def __str__(self) -> str:
        return f"vote {self.consultation_id}/{self.option_id}"


class ConsultationRemark(TimeStamped):
    """A resident's written contribution to the discussion (held if it matches a sensitive word)."""

    consultation = models.ForeignKey(Consultation, on_delete=models.CASCADE, related_name="remarks")
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    nickname = models.CharField(max_length=40)
    text = models.CharField(max_length=1000)
    held = models.BooleanField(default=False)

    class Meta:
        ordering = ["created_at", "pk"]
