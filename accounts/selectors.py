from django.db.models import Q, QuerySet

from .models import Community, CoordinatorPost, Membership, Notification, Role, User


def communities_for_coordinator(user: User) -> QuerySet[Community]:
    """Communities a coordinator answers for: every community of their streets, plus single
    communities they were posted to. Superusers see all."""
    if not user.is_authenticated:
        return Community.objects.none()
    if user.is_superuser:
        return Community.objects.all()
    posts = CoordinatorPost.objects.filter(user=user)
    return Community.objects.filter(
        Q(street__in=posts.filter(community__isnull=True).values("street"))
        | Q(pk__in=posts.filter(community__isnull=False).values("community"))
    ).distinct()


def is_coordinator(user: User) -> bool:
    return bool(user.is_authenticated and (user.is_superuser or user.has_role(Role.COORDINATOR)))


def unread_notifications(user: User) -> QuerySet[Notification]:
    return Notification.objects.filter(user=user, channel="in_app", read_at__isnull=True)


def user_by_phone(phone: str) -> User | None:
    return User.objects.filter(phone=phone).first()


def pending_memberships(coordinator: User) -> QuerySet[Membership]:
    return (
        Membership.objects.filter(
            community__in=communities_for_coordinator(coordinator), verified_at__isnull=True
        )
        .select_related("user", "community__street")
        .order_by("created_at")
    )


def is_staff_member(user: User) -> bool:
    """Coordinators, moderators and admins: the accounts that must sign in with a second factor
    in production (settings.MFA_REQUIRED_FOR_STAFF)."""
    if not user.is_authenticated:
        return False
    if user.is_staff or user.is_superuser:
        return True
    return user.groups.filter(name__in=[Role.COORDINATOR, Role.MODERATOR]).exists()


def has_totp(user: User) -> bool:
    from allauth.mfa.models import Authenticator

    return Authenticator.objects.filter(user=user, type=Authenticator.Type.TOTP).exists()
