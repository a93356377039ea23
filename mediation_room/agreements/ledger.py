"""The append-only chain of locked agreements: canonical JSON, SHA-256, and its verification.

hash(n) = SHA-256(canonical JSON of {agreement n's identity, seq, prev_hash, locked_at, the signed
version's content, every signature}) and prev_hash(n) = hash(n-1). The hash is always recomputed
from the rows themselves, so changing any signed field, signature or image in the database shows.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from .models import Agreement, AgreementSignature, LedgerHead

GENESIS = "0" * 64


def canonical_json(value: Any) -> bytes:
    """One byte string per value: sorted keys, no whitespace, UTF-8 (Chinese kept as is)."""
    return json.dumps(value, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode(
        "utf-8"
    )


def _ts(value: datetime | None) -> str | None:
    return value.astimezone(UTC).isoformat(timespec="microseconds") if value else None


def signature_record(sig: AgreementSignature) -> dict[str, Any]:
    record = {
        "signer_id": sig.signer_id,
        "role": sig.role,
        "name": sig.name,
        "method": sig.method,
        "typed_name": sig.typed_name,
        "image_sha256": hashlib.sha256(bytes(sig.image or b"")).hexdigest(),
        "signed_at": _ts(sig.signed_at),
        "ip": sig.ip or "",
        "user_agent": sig.user_agent,
        "version": sig.version.number,
    }
    # Signatures since addresses are kept apart: the ledger covers the address's salted digest,
    # which outlives the address itself (erased when its retention ends).
    if sig.ip_digest:
        record["ip_digest"] = sig.ip_digest
    return record


def ledger_document(agreement: Agreement) -> dict[str, Any]:
    """Everything the hash covers, as a JSON-safe dict."""
    version = agreement.final_version
    signatures = sorted(
        (
            signature_record(s)
            for s in agreement.signatures.select_related("version").filter(version=version)
        ),
        key=lambda r: (r["role"], r["signer_id"]),
    )
    return {
        "agreement": agreement.code,
        "case": agreement.case.tracking_number,
        "category": agreement.case.category,
        "seq": agreement.seq,
        "prev_hash": agreement.prev_hash,
        "locked_at": _ts(agreement.locked_at),
        "version": version.number if version else None,
        "content": version.content if version else None,
        "signatures": signatures,
    }


def compute_hash(agreement: Agreement) -> str:
    return hashlib.sha256(canonical_json(ledger_document(agreement))).hexdigest()


@dataclass(frozen=True)
class ChainProblem:
    agreement_id: int | None
    code: str
    seq: int | None
    reason: str


def verify_one(agreement: Agreement) -> bool:
    """Whether this locked agreement's rows still hash to the hash it was chained with."""
    return (
        agreement.is_locked and bool(agreement.hash) and compute_hash(agreement) == agreement.hash
    )


def verify_chain() -> tuple[int, ChainProblem | None]:
    """Walk the chain from the first agreement; (count checked, first problem or None).

    When a link breaks (agreement n+1 records a prev_hash that is not agreement n's hash), the
    agreement named is n: its stored hash was changed after n+1 was chained to it."""
    previous_hash = GENESIS
    previous: Agreement | None = None
    expected_seq = 1
    checked = 0
    locked = (
        Agreement.objects.filter(locked_at__isnull=False)
        .select_related("case", "final_version")
        .order_by("seq")
        .iterator(chunk_size=200)
    )
    for agreement in locked:
        if agreement.seq != expected_seq:
            return checked, ChainProblem(
                agreement.pk,
                agreement.code,
                agreement.seq,
                f"sequence jumps from {expected_seq - 1} to {agreement.seq}: "
                f"agreement #{expected_seq} is missing",
            )
        if agreement.prev_hash != previous_hash:
            culprit = previous or agreement
            return checked, ChainProblem(
                culprit.pk,
                culprit.code,
                culprit.seq,
                f"the hash of #{culprit.seq} no longer matches the link recorded by "
                f"#{agreement.seq}",
            )
        if compute_hash(agreement) != agreement.hash:
            return checked, ChainProblem(
                agreement.pk,
                agreement.code,
                agreement.seq,
                "its content or signatures no longer match its hash",
            )
        checked += 1
        previous_hash = agreement.hash
        previous = agreement
        expected_seq += 1
    head = LedgerHead.objects.filter(pk=1).first()
    head_seq, head_hash = (head.seq, head.hash) if head else (0, "")
    if head_seq != checked or (checked and head_hash != previous_hash):
        return checked, ChainProblem(
            previous.pk if previous else None,
            previous.code if previous else "",
            previous.seq if previous else None,
            f"the ledger head records #{head_seq}, the chain ends at #{checked}",
        )
    return checked, None
