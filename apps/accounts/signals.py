"""Every login, logout, failed login and lockout lands in AccessEvent, whichever view or backend caused it."""

import time

from axes.signals import user_locked_out
from django.contrib.auth import get_user_model
from django.contrib.auth.signals import user_logged_in, user_logged_out, user_login_failed
from django.dispatch import receiver

from .models import AccessEvent
from .services import access_event_record

# Where the idle-timeout middleware keeps the time of the last request (epoch seconds).
LAST_SEEN_KEY = "accounts_last_seen"


@receiver(user_logged_in)
def _logged_in(sender, request, user, **kwargs):
    method = getattr(request, "accounts_login_method", AccessEvent.Method.PASSWORD)
    access_event_record(
        kind=AccessEvent.Kind.LOGIN,
        request=request,
        user=user,
        method=method,
        detail=getattr(request, "accounts_login_detail", ""),
    )
    if request is not None and hasattr(request, "session"):
        request.session[LAST_SEEN_KEY] = int(time.time())


@receiver(user_logged_out)
def _logged_out(sender, request, user, **kwargs):
    if user is not None:
        kind = getattr(request, "accounts_logout_kind", AccessEvent.Kind.LOGOUT)
        access_event_record(kind=kind, request=request, user=user)


@receiver(user_login_failed)
def _login_failed(sender, credentials, request=None, **kwargs):
    username = (credentials or {}).get("username") or ""
    user = get_user_model().objects.filter(username=username).first() if username else None
    locked = request is not None and getattr(request, "axes_locked_out", False)
    access_event_record(
        kind=AccessEvent.Kind.LOGIN_FAILED,
        request=request,
        user=user,
        username=username,
        method=getattr(request, "accounts_login_method", AccessEvent.Method.PASSWORD),
        detail="refused while locked out" if locked else "",
    )


@receiver(user_locked_out)
def _locked_out(sender, request, username, ip_address, **kwargs):
    user = get_user_model().objects.filter(username=username).first() if username else None
    access_event_record(kind=AccessEvent.Kind.LOCKED_OUT, request=request, user=user, username=username or "")
