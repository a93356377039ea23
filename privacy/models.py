"""What the platform keeps about its handling of personal data: who opened what (access log),
which cases are under a legal hold, and what each person consented to, word for word."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import TimeStamped
from mediation_room.models import Case, Party


class AccessKind(models.TextChoices):
    EVIDENCE = "evidence", _("Evidence file")
    RECORDING = "recording", _("Recording")
    REPLAY = "replay", _("Replay of a private hearing")
    AGREEMENT_PDF = "agreement_pdf", _("Agreement PDF")
    CASE_PAGE = "case_page", _("Case page")


ROLE_LABELS = {
    "applicant": _("Applicant"),
    "respondent": _("Respondent"),
    "expert": _("Mediator"),
    "coordinator": _("Coordinator"),
    "admin": _("Administrator"),
    "invited_expert": _("Invited mediator"),
}
CONSENT_LABELS = {
    "video": _("Video mediation"),
    "livestream": _("Livestream to residents"),
    "recording": _("Recording"),
    "face": _("Face shown on air"),
}


class AccessLog(models.Model):
    """One opening of a case's file (by anyone) or of a case page (by staff). Append-only."""

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="access_log")
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    # the actor's role in the case when they opened it: applicant, respondent, expert, coordinator,
    # admin; "staff" below means anyone who is not a party
    role = models.CharField(max_length=16)
    kind = models.CharField(max_length=16, choices=AccessKind.choices)
    ref = models.CharField(max_length=64, blank=True, help_text=_("Public id of what was opened."))
    ip = models.GenericIPAddressField(null=True, blank=True)
    at = models.DateTimeField(db_index=True)

    PARTY_ROLES = ("applicant", "respondent")

    class Meta:
        ordering = ["-at", "-pk"]
        indexes = [models.Index(fields=["case", "-at"])]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.role} {self.kind} {self.case_id}"

    @property
    def role_label(self) -> str:
        return str(ROLE_LABELS.get(self.role, self.role))

    @property
    def by_staff(self) -> bool:
        return self.role not in self.PARTY_ROLES


class LegalHold(TimeStamped):
    """While a hold is active nothing of the case is deleted or anonymised by retention."""

    class Kind(models.TextChoices):
        JUDICIAL = "judicial", _("Judicial confirmation requested")
        COORDINATOR = "coordinator", _("Placed by a coordinator")

    case = models.ForeignKey(Case, on_delete=models.CASCADE, related_name="legal_holds")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    reason = models.CharField(_("reason"), max_length=300)
    placed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.PROTECT, related_name="+"
    )
    lift_note = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["case", "kind"],
                condition=Q(lifted_at__isnull=True),
                name="one_active_hold_per_case_and_kind",
            )
        ]


class ConsentReceipt(models.Model):
    """A consent given or withdrawn, with the words the person was shown. Append-only: the
    current answer is ``mediation_room.Consent``; this is the history the person can take away."""

    party = models.ForeignKey(Party, on_delete=models.CASCADE, related_name="consent_receipts")
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    kind = models.CharField(max_length=12)
    granted = models.BooleanField()
    text = models.TextField()
    text_version = models.CharField(max_length=16)
    at = models.DateTimeField()

    class Meta:
        ordering = ["at", "pk"]

    def __str__(self) -> str:
        return f"{self.party_id} {self.kind} {'granted' if self.granted else 'withdrawn'}"

    @property
    def kind_label(self) -> str:
        return str(CONSENT_LABELS.get(self.kind, self.kind))


class ErasureRequest(models.Model):
    """A person asked for their data to be deleted: what was deleted and what is kept, and why,
    item by item (the answer they were shown)."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    user_ref = models.PositiveBigIntegerField(help_text=_("The account's id, kept after erasure."))
    requested_at = models.DateTimeField()
    outcome = models.JSONField(default=list)

    class Meta:
        ordering = ["-requested_at"]

    def __str__(self) -> str:
        return f"erasure {self.user_ref} {self.requested_at:%Y-%m-%d}"


class RetentionRun(models.Model):
    """One run of the retention task that deleted or anonymised something: what, per case and
    for what is not tied to a case (sign-in code messages, the demo outbox, the access log).
    Each case's share is also its ``retention_applied`` event. Append-only."""

    at = models.DateTimeField(db_index=True)
    cases = models.JSONField(default=dict, help_text=_("Case number: {kind: rows or files}."))
    held = models.JSONField(default=list, help_text=_("Cases skipped under a legal hold."))
    unbound = models.JSONField(default=dict, help_text=_("Kind: rows deleted."))

    class Meta:
        ordering = ["-at", "-pk"]

    def __str__(self) -> str:
        return f"retention {self.at:%Y-%m-%d %H:%M}"
