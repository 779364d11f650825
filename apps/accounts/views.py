import logging
import time

import requests
import segno
from authlib.common.errors import AuthlibBaseError
from axes.handlers.proxy import AxesProxyHandler
from axes.helpers import get_lockout_response
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import get_user_model, login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.signals import user_login_failed
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from joserfc.errors import JoseError

from apps.core.actors import Actor

from . import selectors, services
from .forms import TotpCodeForm
from .models import AccessEvent, TotpDevice
from .oidc import sso_client, sso_enabled

log = logging.getLogger(__name__)

# The password step passed; the second factor is still owed. Kept in the session for a few minutes only.
PENDING_KEY = "accounts_pending_login"
PENDING_SECONDS = 300
SSO_NEXT_KEY = "accounts_sso_next"


def _safe_next(request, url: str) -> str:
    allowed = url_has_allowed_host_and_scheme(url, {request.get_host()}, require_https=request.is_secure())
    return url if url and allowed else settings.LOGIN_REDIRECT_URL


class LoginView(auth_views.LoginView):
    """Username + password (throttled by django-axes); users with an authenticator, or whose role requires
    one, continue to the second-factor step instead of being logged in here."""

    redirect_authenticated_user = True

    def form_valid(self, form):
        user = form.get_user()
        if not selectors.second_factor_needed(user=user):
            return super().form_valid(form)
        self.request.session.cycle_key()
        self.request.session[PENDING_KEY] = {
            "user_id": user.pk,
            "backend": user.backend,
            "next": self.get_success_url(),
            "until": int(time.time()) + PENDING_SECONDS,
        }
        return redirect("accounts:second-factor")

    def get_context_data(self, **kwargs):
        return super().get_context_data(**kwargs, sso_enabled=sso_enabled(), sso_name=settings.DOORSTEP_OIDC["NAME"])


def _pending_user(request):
    pending = request.session.get(PENDING_KEY)
    if not pending or pending["until"] < time.time():
        request.session.pop(PENDING_KEY, None)
        return None, None
    user = get_user_model().objects.filter(pk=pending["user_id"], is_active=True).first()
    return user, pending


@require_http_methods(["GET", "POST"])
def second_factor(request):
    """Step two of a password login: a code from the enrolled authenticator, or (role requires one, none
    enrolled yet) enrolment with a QR code. Wrong codes count as failed logins for django-axes."""
    user, pending = _pending_user(request)
    if user is None:
        messages.info(request, "Log in with your username and password first.")
        return redirect("login")
    credentials = {"username": user.get_username()}
    if not AxesProxyHandler.is_allowed(request, credentials):
        return get_lockout_response(request, credentials=credentials)
    actor = Actor(user=user)
    device = selectors.totp_device_confirmed(user=user)
    enrolling = device is None
    if enrolling:
        device = services.totp_enrolment_start(actor=actor, user=user)
    form = TotpCodeForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        code = form.cleaned_data["code"]
        ok = (
            services.totp_enrolment_confirm(actor=actor, device=device, code=code, request=request)
            if enrolling
            else services.totp_verify(device=device, code=code)
        )
        if ok:
            request.session.pop(PENDING_KEY, None)
            request.accounts_login_method = AccessEvent.Method.PASSWORD_TOTP
            login(request, user, backend=pending["backend"])
            return redirect(_safe_next(request, pending["next"]))
        services.access_event_record(kind=AccessEvent.Kind.SECOND_FACTOR_FAILED, request=request, user=user)
        # Counted by django-axes like a wrong password (the access record above already holds it).
        request.accounts_login_method = AccessEvent.Method.PASSWORD_TOTP
        user_login_failed.send(sender=__name__, credentials=credentials, request=request)
        if getattr(request, "axes_locked_out", False):
            request.session.pop(PENDING_KEY, None)
            return get_lockout_response(request, credentials=credentials)
        form.add_error("code", "That code is not valid. Check your authenticator app's clock and try again.")
    return render(request, "accounts/second_factor.html", {"form": form, **_enrolment_context(device, enrolling)})


def _enrolment_context(device: TotpDevice, enrolling: bool) -> dict:
    if not enrolling:
        return {"enrolling": False}
    uri = services.totp_provisioning_uri(device=device, issuer=settings.DOORSTEP_TOTP_ISSUER)
    return {
        "enrolling": True,
        "secret": services.totp_secret(device=device),
        "qr_data_uri": segno.make(uri, error="m").svg_data_uri(scale=5, border=2),
    }


@login_required
@require_http_methods(["GET", "POST"])
def two_factor(request):
    """The signed-in user's own authenticator: enrol (QR + secret, confirmed by a code) or remove it
    (needs a current code; refused while the user's role requires a second factor)."""
    actor = Actor.from_request(request)
    device = TotpDevice.objects.filter(user=request.user).first()
    required = selectors.totp_required(user=request.user)
    form = TotpCodeForm(request.POST or None)
    action = request.POST.get("action")
    if request.method == "POST" and action == "start":
        device = services.totp_enrolment_start(actor=actor, user=request.user)
        form = TotpCodeForm()
    elif request.method == "POST" and action in ("confirm", "remove") and device is not None and form.is_valid():
        code = form.cleaned_data["code"]
        if action == "confirm" and services.totp_enrolment_confirm(
            actor=actor, device=device, code=code, request=request
        ):
            messages.success(request, "Two-factor authentication is on.")
            return redirect("accounts:two-factor")
        if action == "remove" and required:
            messages.error(request, "Your role requires a second factor; it cannot be turned off.")
            return redirect("accounts:two-factor")
        if action == "remove" and services.totp_device_remove(actor=actor, device=device, code=code, request=request):
            messages.success(request, "Two-factor authentication is off.")
            return redirect("accounts:two-factor")
        form.add_error("code", "That code is not valid.")
    confirmed = device is not None and device.confirmed_at is not None
    context = {
        "form": form,
        "device": device,
        "confirmed": confirmed,
        "required": required,
        "has_password": request.user.has_usable_password(),
        **_enrolment_context(device, device is not None and not confirmed),
    }
    return render(request, "accounts/two_factor.html", context, status=400 if form.errors else 200)


def _sso_refuse(request, reason: str, *, username: str = ""):
    services.access_event_record(
        kind=AccessEvent.Kind.SSO_REFUSED, request=request, username=username, method="sso", detail=reason
    )
    messages.error(request, f"Single sign-on failed: {reason}.")
    return redirect("login")


@require_POST
def sso_start(request):
    """POST from the login page (CSRF-protected, so no site can start a sign-in on a visitor's behalf)."""
    if not sso_enabled():
        messages.error(request, "Single sign-on is not configured.")
        return redirect("login")
    request.session[SSO_NEXT_KEY] = _safe_next(request, request.POST.get("next", ""))
    try:
        return sso_client().authorize_redirect(request, request.build_absolute_uri(reverse("accounts:sso-callback")))
    except (AuthlibBaseError, JoseError, requests.RequestException, ValueError) as error:
        log.warning("SSO start failed: %s", error)
        return _sso_refuse(request, "the identity provider could not be reached")


@require_GET
def sso_callback(request):
    """The IdP's redirect back: Authlib checks state, exchanges the code (PKCE), verifies the id_token's
    signature against the IdP's JWKS, issuer, audience, expiry and nonce. The userinfo answer must be for
    the same subject. Then the account is found or made and its roles set from the groups claim."""
    if not sso_enabled():
        messages.error(request, "Single sign-on is not configured.")
        return redirect("login")
    client = sso_client()
    try:
        token = client.authorize_access_token(request)
        claims = token.get("userinfo")
        if not claims:
            return _sso_refuse(request, "the identity provider sent no ID token")
        userinfo = client.userinfo(token=token)
        if userinfo.get("sub") != claims.get("sub"):
            return _sso_refuse(request, "the userinfo answer is for another subject")
        issuer = client.load_server_metadata()["issuer"]
    except (AuthlibBaseError, JoseError, requests.RequestException, ValueError, KeyError) as error:
        log.warning("SSO callback refused: %r", error)
        return _sso_refuse(request, "the identity provider's answer could not be verified")
    conf = settings.DOORSTEP_OIDC
    try:
        user, role_names = services.sso_user_sign_in(
            issuer=issuer,
            claims={**userinfo, **claims},
            groups_claim=conf["GROUPS_CLAIM"],
            role_map=conf["ROLE_MAP"],
        )
    except services.SsoRefused as refusal:
        return _sso_refuse(request, str(refusal), username=claims.get("preferred_username", ""))
    next_url = _safe_next(request, request.session.pop(SSO_NEXT_KEY, ""))
    request.accounts_login_method = AccessEvent.Method.SSO
    request.accounts_login_detail = f"roles: {', '.join(role_names) or 'none'}"
    login(request, user, backend="django.contrib.auth.backends.ModelBackend")
    return redirect(next_url)
