import time

from django.conf import settings
from django.contrib.auth import logout

from .models import AccessEvent
from .signals import LAST_SEEN_KEY

# Refresh the last-seen time at most this often, so a busy page does not write its session on every request.
_TOUCH_EVERY = 60


class IdleSessionTimeoutMiddleware:
    """Logs out a session idle longer than DOORSTEP_SESSION_IDLE_TIMEOUT; the view then sees an anonymous
    user and sends it to the login page as usual. API keys carry no session and are not affected."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        if request.user.is_authenticated:
            now = int(time.time())
            last_seen = request.session.get(LAST_SEEN_KEY)
            if last_seen is not None and now - last_seen > settings.DOORSTEP_SESSION_IDLE_TIMEOUT:
                request.accounts_logout_kind = AccessEvent.Kind.SESSION_EXPIRED
                logout(request)
            elif last_seen is None or now - last_seen >= _TOUCH_EVERY:
                request.session[LAST_SEEN_KEY] = now
        return self.get_response(request)
