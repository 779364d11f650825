"""Sign-in rules: the access record, the TOTP second factor and accounts made or updated by single sign-on."""

import pyotp
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from apps.connectors.crypto import decrypt_secrets, encrypt_secrets
from apps.core.actors import Actor
from apps.permissions import roles

from .models import AccessEvent, SsoIdentity, TotpDevice
from .network import client_ip


class SsoRefused(Exception):
    """The identity provider's answer was valid but cannot sign anyone in here (the message says why)."""


def access_event_record(*, kind: str, request=None, user=None, username: str = "", method: str = "", detail: str = ""):
    """Append one access fact. `username` defaults to the user's; the address and agent come from `request`."""
    meta = request.META if request is not None else {}
    return AccessEvent.objects.create(
        kind=kind,
        user=user if user is not None and user.pk else None,
        username=(username or (user.get_username() if user is not None else ""))[:255],
        ip=client_ip(request) if request is not None else None,
        user_agent=meta.get("HTTP_USER_AGENT", "")[:255],
        method=method,
        detail=detail[:255],
    )


def _totp(device: TotpDevice) -> pyotp.TOTP:
    return pyotp.TOTP(decrypt_secrets(device.secret_encrypted)["totp"])


def totp_provisioning_uri(*, device: TotpDevice, issuer: str) -> str:
    return _totp(device).provisioning_uri(name=device.user.get_username(), issuer_name=issuer)


def totp_secret(*, device: TotpDevice) -> str:
    return decrypt_secrets(device.secret_encrypted)["totp"]


def totp_enrolment_start(*, actor: Actor, user) -> TotpDevice:
    """The user's authenticator, made (unconfirmed, with a new secret) if they have none; only the user
    enrols themself. An existing one is returned as it is: a confirmed one is never replaced by enrolling
    again (whoever holds the session could otherwise swap the second factor), and an unconfirmed one keeps
    the secret the user may already have scanned."""
    if actor.user is None or actor.user.pk != user.pk:
        raise PermissionError("Only the user enrols their own authenticator.")
    device, _ = TotpDevice.objects.get_or_create(
        user=user, defaults={"secret_encrypted": encrypt_secrets({"totp": pyotp.random_base32()})}
    )
    return device


def totp_verify(*, device: TotpDevice, code: str) -> bool:
    """Accept a code of the current 30-second step or one step either side (clock drift), each step only
    once: the conditional update refuses a replayed code even when two requests race (also on SQLite)."""
    code = "".join(code.split())
    if not (code.isdigit() and len(code) == 6):
        return False
    totp = _totp(device)
    now = timezone.now()
    current = totp.timecode(now)
    for step in (current - 1, current, current + 1):
        if step > device.last_step and pyotp.utils.strings_equal(code, totp.generate_otp(step)):
            used = TotpDevice.objects.filter(pk=device.pk, last_step__lt=step).update(last_step=step)
            if used:
                device.last_step = step
            return bool(used)
    return False


@transaction.atomic
def totp_enrolment_confirm(*, actor: Actor, device: TotpDevice, code: str, request=None) -> bool:
    """The first valid code proves the user's authenticator holds the secret; from then on it is required."""
    if actor.user is None or actor.user.pk != device.user_id:
        raise PermissionError("Only the user confirms their own authenticator.")
    if device.confirmed_at is not None or not totp_verify(device=device, code=code):
        return False
    device.confirmed_at = timezone.now()
    device.save(update_fields=["confirmed_at"])
    access_event_record(kind=AccessEvent.Kind.TOTP_ENABLED, request=request, user=device.user)
    return True


@transaction.atomic
def totp_device_remove(*, actor: Actor, device: TotpDevice, code: str, request=None) -> bool:
    """Turning the second factor off needs a current code (a stolen session alone cannot do it)."""
    if actor.user is None or actor.user.pk != device.user_id:
        raise PermissionError("Only the user removes their own authenticator.")
    if not totp_verify(device=device, code=code):
        return False
    device.delete()
    access_event_record(kind=AccessEvent.Kind.TOTP_DISABLED, request=request, user=actor.user)
    return True


def sso_roles_from_claims(*, claims: dict, groups_claim: str, role_map: dict) -> set[str]:
    """The Doorstep roles the IdP groups map to; unknown groups and unknown role names give nothing."""
    groups = claims.get(groups_claim) or []
    if isinstance(groups, str):
        groups = [groups]
    return {role_map[g] for g in groups if isinstance(g, str) and role_map.get(g) in roles.ALL}


@transaction.atomic
def sso_user_sign_in(*, issuer: str, claims: dict, groups_claim: str, role_map: dict):
    """The account an OIDC subject signs in as: found by (issuer, sub), else created from its claims.
    Its role groups are set from the groups claim on every login (so removal at the IdP takes effect);
    groups that are not roles (e.g. review teams) are left alone. A local account with the same username
    is never taken over: that sign-in is refused."""
    subject = claims.get("sub")
    if not subject:
        raise SsoRefused("the identity provider sent no subject")
    User = get_user_model()
    identity = SsoIdentity.objects.select_related("user").filter(issuer=issuer, subject=subject).first()
    if identity is None:
        username = (claims.get("preferred_username") or claims.get("email") or subject)[:150]
        if User.objects.filter(username=username).exists():
            raise SsoRefused(f"a local account named {username!r} exists; an admin must link it")
        user = User(username=username)
        user.set_unusable_password()
        user.save()
        identity = SsoIdentity.objects.create(user=user, issuer=issuer, subject=subject)
    user = identity.user
    if not user.is_active:
        raise SsoRefused("the account is disabled")
    user.email = claims.get("email") or user.email
    user.first_name = (claims.get("given_name") or user.first_name)[:150]
    user.last_name = (claims.get("family_name") or user.last_name)[:150]
    user.save(update_fields=["email", "first_name", "last_name"])
    wanted = sso_roles_from_claims(claims=claims, groups_claim=groups_claim, role_map=role_map)
    current = set(user.groups.filter(name__in=roles.ALL).values_list("name", flat=True))
    if current - wanted:
        user.groups.remove(*Group.objects.filter(name__in=current - wanted))
    if wanted - current:
        user.groups.add(*(Group.objects.get_or_create(name=name)[0] for name in sorted(wanted - current)))
    identity.last_login_at = timezone.now()
    identity.save(update_fields=["last_login_at"])
    return user, sorted(wanted)
