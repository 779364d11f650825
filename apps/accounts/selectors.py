from django.conf import settings

from apps.permissions import roles

from .models import AccessEvent, TotpDevice


def totp_device_confirmed(*, user) -> TotpDevice | None:
    return TotpDevice.objects.filter(user=user, confirmed_at__isnull=False).first()


def totp_required(*, user) -> bool:
    """Whether the settings make a second factor mandatory for this user's role (admins and governance)."""
    return settings.DOORSTEP_TOTP_REQUIRED and roles.role_of(user) in settings.DOORSTEP_TOTP_REQUIRED_ROLES


def second_factor_needed(*, user) -> bool:
    """A password alone logs in only users with no enrolled authenticator whose role does not require one."""
    return totp_device_confirmed(user=user) is not None or totp_required(user=user)


def access_event_list(*, user=None):
    """Newest first; callers paginate by (occurred_at, id), never count."""
    events = AccessEvent.objects.select_related("user").order_by("-occurred_at", "-id")
    return events.filter(user=user) if user is not None else events
