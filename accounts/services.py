"""Writes for accounts: notifications, memberships, roles."""

from __future__ import annotations

import hashlib
import logging
from datetime import timedelta
from functools import partial

from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.mail import send_mail
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from cloudbench.logs import is_connection_failure

from .models import Channel, Community, Membership, Notification, Role, User
from .sms import get_backend

# Kinds whose body is a secret: it is wiped from the delivery log once the message has gone out.
SECRET_KINDS = {"login_code", "signing_code"}

logger = logging.getLogger(__name__)


def _dedupe(key: str) -> str:
    return key if len(key) <= 200 else hashlib.sha256(key.encode()).hexdigest()


@transaction.atomic
def notification_send(
    *,
    channel: str,
    kind: str,
    body: str,
    dedupe_key: str,
    user: User | None = None,
    phone: str = "",
    email: str = "",
    subject: str = "",
    link: str = "",
    case_ref: str = "",
) -> Notification:
    """Queue one message and deliver it through Celery after the transaction commits.

    Idempotent: the same `dedupe_key` yields the same row and at most one delivery. In-app
    notifications are 'delivered' by being stored, no task needed.
    """
    if channel not in Channel.values:
        raise ValueError(f"unknown channel {channel!r}")
    if channel == Channel.SMS and not phone and user is not None:
        phone = user.phone or ""
    if channel == Channel.EMAIL and not email and user is not None:
        email = user.email
    notification, created = Notification.objects.get_or_create(
        dedupe_key=_dedupe(f"{channel}:{dedupe_key}"),
        defaults={
            "user": user,
            "phone": phone,
            "email": email,
            "channel": channel,
            "kind": kind,
            "subject": subject[:120],
            "body": body[:1000],
            "link": link[:300],
            "case_ref": case_ref,
        },
    )
    if created:
        if channel == Channel.IN_APP:
            notification.status = Notification.Status.SENT
            notification.sent_at = timezone.now()
            notification.save(update_fields=["status", "sent_at", "updated_at"])
        else:
            # robust: the caller's work stands whatever happens to the hand-over
            transaction.on_commit(partial(_hand_to_worker, notification.pk), robust=True)
    return notification


def _hand_to_worker(notification_id: int) -> None:
    """With the broker down the row stays queued and the resend sweep
    (notifications_resend_stale) hands it to a worker later: one line in the log says so."""
    from .tasks import deliver_notification

    try:
        deliver_notification.delay(notification_id)
    except Exception as exc:
        if not is_connection_failure(exc):
            raise
        logger.warning(
            "notification %s stays queued until the resend sweep: the broker is unreachable (%s)",
            notification_id,
            exc,
        )


def notifications_resend_stale(*, older_than: timedelta) -> int:
    """Hand every message still queued after `older_than` to a worker again: its task was lost
    (the broker was down when it was queued, or the queue was purged). Sending twice is safe:
    delivery locks the row and sends a message at most once. Returns how many were handed on."""
    from .tasks import deliver_notification

    stale = list(
        Notification.objects.filter(
            status=Notification.Status.QUEUED, updated_at__lt=timezone.now() - older_than
        )
        .exclude(channel=Channel.IN_APP)
        .values_list("pk", flat=True)[:1000]
    )
    for pk in stale:
        deliver_notification.delay(pk)
    return len(stale)


def notify_person(
    *,
    kind: str,
    body: str,
    dedupe_key: str,
    user: User | None = None,
    phone: str = "",
    link: str = "",
    case_ref: str = "",
    in_app: bool = True,
) -> None:
    """SMS to the number (or the user's number), plus an in-app notice when there is a user."""
    target_phone = phone or (user.phone if user else "") or ""
    if target_phone:
        notification_send(
            channel=Channel.SMS,
            kind=kind,
            body=f"{body} {link}".strip(),
            dedupe_key=dedupe_key,
            user=user,
            phone=target_phone,
            link=link,
            case_ref=case_ref,
        )
    if user is not None and in_app:
        notification_send(
            channel=Channel.IN_APP,
            kind=kind,
            body=body,
            dedupe_key=dedupe_key,
            user=user,
            link=link,
            case_ref=case_ref,
        )


def notification_deliver(*, notification_id: int) -> str:
    """Send one queued notification. Safe to run twice or concurrently: the row stays locked while
    the message goes out and until it is marked sent, so a message is never sent twice. A failure
    is committed to the delivery log and then re-raised for Celery to retry."""
    failure: Exception | None = None
    with transaction.atomic():
        notification = Notification.objects.select_for_update().filter(pk=notification_id).first()
        if notification is None:
            return "missing"
        if notification.status == Notification.Status.SENT:
            return notification.status
        notification.attempts += 1
        try:
            if notification.channel == Channel.SMS:
                # the key lets the gateway drop a repeat: a worker killed after handing the
                # message over (but before it committed) leaves the row queued, and the task runs
                # again on another worker
                get_backend().send(
                    phone=notification.phone, body=notification.body, key=notification.dedupe_key
                )
            elif notification.channel == Channel.EMAIL:
                send_mail(
                    notification.subject or notification.kind,
                    notification.body,
                    None,
                    [notification.email],
                )
        except Exception as exc:
            notification.status = Notification.Status.FAILED
            notification.last_error = f"{type(exc).__name__}: {exc}"[:300]
            notification.save(update_fields=["status", "attempts", "last_error", "updated_at"])
            failure = exc
        else:
            notification.status = Notification.Status.SENT
            notification.sent_at = timezone.now()
            notification.last_error = ""
            fields = ["status", "attempts", "sent_at", "last_error", "updated_at"]
            if notification.kind in SECRET_KINDS:
                notification.body = "[redacted after delivery]"
                fields.append("body")
            notification.save(update_fields=fields)
    if failure is not None:
        raise failure
    return notification.status


def notification_mark_read(*, user: User, notification_id: int) -> None:
    Notification.objects.filter(pk=notification_id, user=user, read_at__isnull=True).update(
        read_at=timezone.now()
    )


def role_grant(*, user: User, role: str) -> None:
    if role not in Role.values:
        raise ValueError(f"unknown role {role!r}")
    group, _ = Group.objects.get_or_create(name=role)
    user.groups.add(group)


@transaction.atomic
def membership_request(*, user: User, community: Community, household: str) -> Membership:
    """A resident says they live in a community; a coordinator of it verifies before the
    membership counts (voting, the bench panel)."""
    household = (household or "").strip()
    if not household or len(household) > 60:
        raise ValidationError({"household": _("Give your building, unit and room, e.g. 3-2-501.")})
    membership, created = Membership.objects.select_for_update().get_or_create(
        user=user, community=community, defaults={"household": household}
    )
    if not created and membership.verified_at is None:
        membership.household = household
        membership.save(update_fields=["household", "updated_at"])
    return membership


@transaction.atomic
def membership_verify(
    *, coordinator: User, membership: Membership, approve: bool = True
) -> Membership | None:
    """A coordinator of the community (or its street) confirms that a resident lives there, or
    turns the request down (the request is deleted, the resident may ask again)."""
    from .selectors import communities_for_coordinator

    membership = Membership.objects.select_for_update().get(pk=membership.pk)
    if not communities_for_coordinator(coordinator).filter(pk=membership.community_id).exists():
        raise PermissionDenied(_("You are not a coordinator of this community."))
    if not approve:
        membership.delete()
        return None
    membership.verified_at = timezone.now()
    membership.verified_by = coordinator
    membership.save(update_fields=["verified_at", "verified_by", "updated_at"])
    return membership
