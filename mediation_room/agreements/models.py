"""Agreement data. A locked agreement is immutable at every layer we control: the service refuses,
save() raises, the custom QuerySet refuses update()/delete(), the admin is read-only, and on
PostgreSQL a trigger (migration 0003) refuses the row change itself."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from accounts.models import TimeStamped
from privacy.storage import sealed_storage

# Crockford-style alphabet: no I, L, O, U, so a code read aloud or typed from paper survives.
CODE_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
CODE_LENGTH = 12


def new_verify_code() -> str:
    return "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))


class AgreementLocked(Exception):
    """Raised by every code path that would change a locked agreement."""


# Columns of a locked agreement that may still be written: the PDF is rendered after locking.
MUTABLE_AFTER_LOCK = frozenset({"pdf", "updated_at"})


class AgreementQuerySet(models.QuerySet):
    def update(self, **kwargs):
        if set(kwargs) - MUTABLE_AFTER_LOCK and self.filter(locked_at__isnull=False).exists():
            raise AgreementLocked("a locked agreement cannot be updated")
        return super().update(**kwargs)

    def delete(self):
        if self.filter(locked_at__isnull=False).exists():
            raise AgreementLocked("a locked agreement cannot be deleted")
        return super().delete()


class AgreementChildQuerySet(models.QuerySet):
    """Versions and signatures: append-only; rows of a locked agreement cannot go either."""

    def update(self, **kwargs):
        raise AgreementLocked(f"{self.model.__name__} rows are append-only")

    def delete(self):
        if self.filter(agreement__locked_at__isnull=False).exists():
            raise AgreementLocked("rows of a locked agreement cannot be deleted")
        return super().delete()


class Agreement(TimeStamped):
    """One mediation agreement of a case, from first draft to the locked, signed text."""

    class State(models.TextChoices):
        DRAFT = "draft", _("Draft")
        SIGNING = "signing", _("Awaiting signatures")
        LOCKED = "locked", _("Signed and locked")
        REFUSED = "refused", _("Refused")

    class Referral(models.TextChoices):
        NONE = "", _("None")
        ARBITRATION = "arbitration", _("Arbitration")
        LITIGATION = "litigation", _("Litigation")
        DEPARTMENT = "department", _("Another department")

    case = models.ForeignKey(
        "mediation_room.Case", on_delete=models.PROTECT, related_name="agreements"
    )
    code = models.CharField(max_length=16, unique=True, default=new_verify_code)
    state = models.CharField(max_length=10, choices=State.choices, default=State.DRAFT)
    final_version = models.ForeignKey(
        "AgreementVersion",
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
        help_text=_("The text submitted for signature."),
    )
    submitted_at = models.DateTimeField(null=True, blank=True)
    locked_at = models.DateTimeField(null=True, blank=True, db_index=True)
    seq = models.PositiveIntegerField(null=True, blank=True, unique=True)
    prev_hash = models.CharField(max_length=64, blank=True)
    hash = models.CharField(max_length=64, blank=True, db_index=True)
    pdf = models.FileField(upload_to="agreements/", blank=True, storage=sealed_storage)
    refused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.PROTECT,
        related_name="+",
    )
    refusal_reason = models.CharField(max_length=500, blank=True)
    referral = models.CharField(max_length=12, choices=Referral.choices, blank=True)
    referral_note = models.CharField(max_length=200, blank=True)

    objects = AgreementQuerySet.as_manager()

    class Meta:
        base_manager_name = "objects"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(state__in=["draft", "signing", "locked", "refused"]),
                name="agreement_state_valid",
            ),
            # A case has at most one agreement that is still being drafted or signed.
            models.UniqueConstraint(
                fields=["case"],
                condition=Q(state__in=["draft", "signing"]),
                name="one_open_agreement_per_case",
            ),
            models.CheckConstraint(
                condition=Q(locked_at__isnull=True) | (Q(seq__isnull=False) & ~Q(hash="")),
                name="locked_agreement_is_chained",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.case.tracking_number} {self.code}"

    @property
    def is_locked(self) -> bool:
        return self.locked_at is not None

    def save(self, *args, **kwargs):
        if not self._state.adding and self.pk is not None:
            fields = kwargs.get("update_fields")
            writes_only_mutable = fields is not None and set(fields) <= MUTABLE_AFTER_LOCK
            # Ask the database, not this instance: a stale copy loaded before locking must not
            # overwrite the locked row either.
            if (
                not writes_only_mutable
                and type(self)._base_manager.filter(pk=self.pk, locked_at__isnull=False).exists()
            ):
                raise AgreementLocked(f"agreement {self.pk} is locked")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if type(self)._base_manager.filter(pk=self.pk, locked_at__isnull=False).exists():
            raise AgreementLocked(f"agreement {self.pk} is locked")
        return super().delete(*args, **kwargs)


class _AppendOnly(models.Model):
    """Saved once, never changed; deletable only while its agreement is not locked."""

    objects = AgreementChildQuerySet.as_manager()

    class Meta:
        abstract = True
        base_manager_name = "objects"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AgreementLocked(f"{type(self).__name__} rows are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if Agreement._base_manager.filter(pk=self.agreement_id, locked_at__isnull=False).exists():
            raise AgreementLocked("rows of a locked agreement cannot be deleted")
        return super().delete(*args, **kwargs)


class AgreementVersion(_AppendOnly):
    """Every saved text of the agreement. `content` is the whole document as JSON (see
    agreements.content for its shape), so a version can be compared and hashed on its own."""

    agreement = models.ForeignKey(Agreement, on_delete=models.CASCADE, related_name="versions")
    number = models.PositiveIntegerField()
    content = models.JSONField()
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    note = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta(_AppendOnly.Meta):
        ordering = ["agreement", "number"]
        constraints = [
            models.UniqueConstraint(fields=["agreement", "number"], name="uniq_agreement_version")
        ]

    def __str__(self) -> str:
        return f"{self.agreement_id} v{self.number}"


class AgreementSignature(_AppendOnly):
    class Method(models.TextChoices):
        DRAWN = "drawn", _("Drawn signature")
        TYPED = "typed", _("Typed name")

    agreement = models.ForeignKey(Agreement, on_delete=models.CASCADE, related_name="signatures")
    version = models.ForeignKey(AgreementVersion, on_delete=models.PROTECT, related_name="+")
    signer = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    role = models.CharField(max_length=12)  # applicant | respondent | expert
    party = models.ForeignKey(
        "mediation_room.Party", null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    name = models.CharField(max_length=40)
    method = models.CharField(max_length=6, choices=Method.choices)
    typed_name = models.CharField(max_length=40, blank=True)
    image = models.BinaryField(blank=True, default=b"", editable=False)
    image_sha256 = models.CharField(max_length=64, blank=True)
    signed_at = models.DateTimeField()
    # Signed before addresses were kept apart (see SignatureAddress): the address itself.
    ip = models.GenericIPAddressField(null=True, blank=True)
    # SHA-256 of the SignatureAddress's salt and address: what the ledger covers, so that the
    # address can be erased when its retention ends and the chain still verifies.
    ip_digest = models.CharField(max_length=64, blank=True)
    user_agent = models.CharField(max_length=300, blank=True)
    challenge = models.OneToOneField(
        "SigningChallenge", on_delete=models.PROTECT, related_name="signature"
    )

    class Meta(_AppendOnly.Meta):
        ordering = ["agreement", "signed_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["agreement", "version", "signer"], name="one_signature_per_signer"
            ),
            models.CheckConstraint(
                condition=Q(method__in=["drawn", "typed"]), name="signature_method_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.agreement_id} {self.role}"


class SignatureAddress(models.Model):
    """The network address a signature was made from, kept beside the locked signature so that
    retention can erase it; ``ip_digest_of(salt, ip)`` is the signature's ``ip_digest``."""

    signature = models.OneToOneField(
        AgreementSignature, on_delete=models.CASCADE, related_name="address"
    )
    ip = models.GenericIPAddressField()
    salt = models.CharField(max_length=32)

    def __str__(self) -> str:
        return f"address of signature {self.signature_id}"

    @staticmethod
    def digest_of(salt: str, ip: str) -> str:
        import hashlib

        return hashlib.sha256(f"{salt}:{ip}".encode()).hexdigest()


class SigningChallenge(TimeStamped):
    """A one-time SMS code that proves the signer holds their phone, for one version."""

    agreement = models.ForeignKey(Agreement, on_delete=models.CASCADE, related_name="challenges")
    version = models.ForeignKey(AgreementVersion, on_delete=models.CASCADE, related_name="+")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    code_hash = models.CharField(max_length=64)
    salt = models.CharField(max_length=32)
    expires_at = models.DateTimeField()
    attempts = models.PositiveSmallIntegerField(default=0)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["agreement", "user", "created_at"])]

    def __str__(self) -> str:
        return f"challenge {self.pk}"


class AgreementComment(TimeStamped):
    class Kind(models.TextChoices):
        COMMENT = "comment", _("Comment")
        CHANGE = "change", _("Change request")

    agreement = models.ForeignKey(Agreement, on_delete=models.CASCADE, related_name="comments")
    version = models.ForeignKey(AgreementVersion, on_delete=models.CASCADE, related_name="comments")
    term_key = models.CharField(max_length=12, blank=True, help_text=_("Empty: the whole text."))
    author = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    author_role = models.CharField(max_length=12)
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.COMMENT)
    body = models.CharField(max_length=1000)

    class Meta:
        ordering = ["created_at", "pk"]

    def __str__(self) -> str:
        return f"comment {self.pk}"


class LedgerHead(models.Model):
    """The tip of the agreement chain: one row, locked while an agreement joins the chain, so two
    agreements locking at once get consecutive numbers and the right previous hash. Also lets
    verification notice a chain whose newest entries were removed."""

    id = models.PositiveSmallIntegerField(primary_key=True, default=1)
    seq = models.PositiveIntegerField(default=0)
    hash = models.CharField(max_length=64, blank=True)

    def __str__(self) -> str:
        return f"ledger @ {self.seq}"


class FollowUp(TimeStamped):
    """The check (回访) of one term with a deadline: asked when due, answered by the parties."""

    class State(models.TextChoices):
        PENDING = "pending", _("Not yet due")
        ASKED = "asked", _("Parties asked")
        FULFILLED = "fulfilled", _("Fulfilled")
        UNFULFILLED = "unfulfilled", _("Not fulfilled")
        UNANSWERED = "unanswered", _("No answer")

    agreement = models.ForeignKey(Agreement, on_delete=models.PROTECT, related_name="follow_ups")
    term_key = models.CharField(max_length=12)
    term_text = models.CharField(max_length=500)
    due_date = models.DateField()
    due_at = models.DateTimeField(db_index=True, help_text=_("End of the due date, local time."))
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    asked_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["due_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["agreement", "term_key"], name="uniq_follow_up_term"),
        ]
        indexes = [models.Index(fields=["state", "due_at"])]

    def __str__(self) -> str:
        return f"follow-up {self.pk} ({self.state})"


class FollowUpAnswer(TimeStamped):
    follow_up = models.ForeignKey(FollowUp, on_delete=models.CASCADE, related_name="answers")
    party = models.ForeignKey("mediation_room.Party", on_delete=models.PROTECT, related_name="+")
    fulfilled = models.BooleanField()
    note = models.CharField(max_length=500, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["follow_up", "party"], name="one_answer_per_party")
        ]

    def __str__(self) -> str:
        return f"answer {self.pk}"
