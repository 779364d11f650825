"""Local accounts: the login contract, password policy, throttling, the TOTP second factor, idle timeout
and the access record."""

import time

import pyotp
import pytest
from django.contrib.auth import password_validation
from django.contrib.auth.models import Group
from django.core.exceptions import ValidationError
from django.test import override_settings

from apps.accounts import services
from apps.accounts.models import AccessEvent, TotpDevice
from apps.accounts.signals import LAST_SEEN_KEY
from apps.core.actors import Actor
from apps.permissions import roles
from tests.factories import UserFactory

PASSWORD = "demo-pass-123!"
pytestmark = pytest.mark.django_db


def log_in(client, username, password=PASSWORD, **extra):
    return client.post("/accounts/login/", {"username": username, "password": password, "next": "/roi/"}, **extra)


def current_user(client):
    user = client.get("/").wsgi_request.user
    return user if user.is_authenticated else None


def enrolled(user) -> pyotp.TOTP:
    device = services.totp_enrolment_start(actor=Actor(user=user), user=user)
    totp = pyotp.TOTP(services.totp_secret(device=device))
    assert services.totp_enrolment_confirm(actor=Actor(user=user), device=device, code=totp.now())
    TotpDevice.objects.filter(pk=device.pk).update(last_step=0)  # so the test may log in with the current code
    return totp


def test_username_and_password_still_log_in_a_user_without_totp(client):
    user = UserFactory()
    response = log_in(client, user.username)
    assert response.status_code == 302 and response["Location"] == "/roi/"
    assert current_user(client) == user
    event = AccessEvent.objects.get(kind=AccessEvent.Kind.LOGIN)
    assert (event.user, event.method, event.ip) == (user, AccessEvent.Method.PASSWORD, "127.0.0.1")


def test_a_wrong_password_is_a_form_error_and_a_recorded_failure(client):
    user = UserFactory()
    response = log_in(client, user.username, "wrong-password", HTTP_USER_AGENT="pytest-agent")
    assert response.status_code == 200 and "Please enter a correct username and password" in response.content.decode()
    event = AccessEvent.objects.get(kind=AccessEvent.Kind.LOGIN_FAILED)
    assert (event.user, event.username, event.ip, event.user_agent) == (
        user,
        user.username,
        "127.0.0.1",
        "pytest-agent",
    )
    log_in(client, "nobody-by-that-name", "x")
    assert AccessEvent.objects.filter(kind=AccessEvent.Kind.LOGIN_FAILED, user=None, username="nobody-by-that-name")


def test_logout_is_recorded(client):
    user = UserFactory()
    client.force_login(user)
    client.post("/accounts/logout/")
    assert AccessEvent.objects.filter(kind=AccessEvent.Kind.LOGOUT, user=user).exists()


def test_password_policy_wants_twelve_characters_and_not_a_common_one():
    user = UserFactory.build(username="carla")
    for weak in ("Short-pw-1!", "password1234", "123456789012", "carla@example"):
        with pytest.raises(ValidationError):
            password_validation.validate_password(weak, user)
    password_validation.validate_password("correct horse battery staple", user)


@override_settings(AXES_FAILURE_LIMIT=3)
def test_failures_lock_that_username_and_address_for_a_cool_off(client):
    user = UserFactory()
    for _ in range(2):
        assert log_in(client, user.username, "wrong-password").status_code == 200
    locked = log_in(client, user.username, "wrong-password")
    assert locked.status_code == 429 and "Too many failed attempts" in locked.content.decode()
    # Even the right password is refused while locked, with the same clear page (never a 500).
    again = log_in(client, user.username)
    assert again.status_code == 429 and current_user(client) is None
    assert AccessEvent.objects.filter(kind=AccessEvent.Kind.LOCKED_OUT, user=user).exists()
    # Another address is not locked (per username + IP), nor is another user from this address.
    assert log_in(client, user.username, REMOTE_ADDR="10.0.0.7").status_code == 302
    client.logout()
    other = UserFactory()
    assert log_in(client, other.username).status_code == 302


@override_settings(AXES_FAILURE_LIMIT=3, AXES_COOLOFF_TIME=__import__("datetime").timedelta(seconds=1))
def test_the_lock_lifts_after_the_cool_off(client):
    user = UserFactory()
    for _ in range(3):
        log_in(client, user.username, "wrong-password")
    assert log_in(client, user.username).status_code == 429
    time.sleep(1.2)
    assert log_in(client, user.username).status_code == 302


def test_a_user_with_totp_needs_the_code(client):
    user = UserFactory()
    totp = enrolled(user)
    response = log_in(client, user.username)
    assert response.status_code == 302 and response["Location"] == "/accounts/login/second-factor/"
    assert current_user(client) is None
    page = client.get("/accounts/login/second-factor/")
    assert page.status_code == 200 and "Enter your authentication code" in page.content.decode()
    wrong = client.post("/accounts/login/second-factor/", {"code": "000000" if totp.now() != "000000" else "111111"})
    assert wrong.status_code == 200 and "That code is not valid" in wrong.content.decode()
    assert AccessEvent.objects.filter(kind=AccessEvent.Kind.SECOND_FACTOR_FAILED, user=user).exists()
    ok = client.post("/accounts/login/second-factor/", {"code": totp.now()})
    assert ok.status_code == 302 and ok["Location"] == "/roi/"
    assert current_user(client) == user
    assert AccessEvent.objects.get(kind=AccessEvent.Kind.LOGIN).method == AccessEvent.Method.PASSWORD_TOTP


def test_a_totp_code_works_once(client):
    user = UserFactory()
    totp = enrolled(user)
    device = TotpDevice.objects.get(user=user)
    code = totp.now()
    assert services.totp_verify(device=device, code=code)
    assert not services.totp_verify(device=device, code=code)


def test_the_code_form_names_the_field_on_bad_input(client):
    user = UserFactory()
    enrolled(user)
    log_in(client, user.username)
    response = client.post("/accounts/login/second-factor/", {"code": "abc"})
    assert response.status_code == 200 and "Enter the 6 digits" in response.content.decode()


@override_settings(AXES_FAILURE_LIMIT=3)
def test_wrong_codes_count_towards_the_lockout(client):
    user = UserFactory()
    enrolled(user)
    log_in(client, user.username)
    statuses = [client.post("/accounts/login/second-factor/", {"code": "000001"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert current_user(client) is None
    assert client.get("/accounts/login/second-factor/").status_code == 302  # the pending login is dropped


def test_the_second_factor_page_without_a_password_step_sends_to_login(client):
    response = client.get("/accounts/login/second-factor/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"


@override_settings(DOORSTEP_TOTP_REQUIRED=True)
def test_required_roles_enrol_at_login(client):
    user = UserFactory()
    user.groups.add(Group.objects.get_or_create(name=roles.GOVERNANCE)[0])
    log_in(client, user.username)
    page = client.get("/accounts/login/second-factor/")
    body = page.content.decode()
    assert "Set up two-factor authentication" in body and 'src="data:image/svg+xml' in body
    device = TotpDevice.objects.get(user=user)
    assert device.confirmed_at is None and services.totp_secret(device=device) in body
    assert services.totp_secret(device=device) not in device.secret_encrypted  # encrypted at rest
    response = client.post(
        "/accounts/login/second-factor/", {"code": pyotp.TOTP(services.totp_secret(device=device)).now()}
    )
    assert response.status_code == 302 and current_user(client) == user
    device.refresh_from_db()
    assert device.confirmed_at is not None
    assert AccessEvent.objects.filter(kind=AccessEvent.Kind.TOTP_ENABLED, user=user).exists()


@override_settings(DOORSTEP_TOTP_REQUIRED=True)
def test_roles_that_are_not_required_log_in_with_a_password(client):
    user = UserFactory()
    user.groups.add(Group.objects.get_or_create(name=roles.REVIEWER)[0])
    assert log_in(client, user.username)["Location"] == "/roi/"


def test_two_factor_page_enrols_and_removes(client):
    user = UserFactory()
    client.force_login(user)
    assert client.get("/accounts/two-factor/").status_code == 200
    page = client.post("/accounts/two-factor/", {"action": "start"})
    device = TotpDevice.objects.get(user=user)
    totp = pyotp.TOTP(services.totp_secret(device=device))
    assert services.totp_secret(device=device) in page.content.decode()
    bad = client.post("/accounts/two-factor/", {"action": "confirm", "code": "12"})
    assert bad.status_code == 400 and "Enter the 6 digits" in bad.content.decode()
    assert client.post("/accounts/two-factor/", {"action": "confirm", "code": totp.now()}).status_code == 302
    device.refresh_from_db()
    assert device.confirmed_at is not None
    # Starting again does not replace a confirmed authenticator.
    client.post("/accounts/two-factor/", {"action": "start"})
    assert TotpDevice.objects.get(user=user).secret_encrypted == device.secret_encrypted
    TotpDevice.objects.filter(pk=device.pk).update(last_step=0)
    assert client.post("/accounts/two-factor/", {"action": "remove", "code": totp.now()}).status_code == 302
    assert not TotpDevice.objects.filter(user=user).exists()
    assert AccessEvent.objects.filter(kind=AccessEvent.Kind.TOTP_DISABLED, user=user).exists()


@override_settings(DOORSTEP_TOTP_REQUIRED=True)
def test_a_required_second_factor_cannot_be_removed(client):
    user = UserFactory()
    user.groups.add(Group.objects.get_or_create(name=roles.ADMIN)[0])
    totp = enrolled(user)
    client.force_login(user)
    client.post("/accounts/two-factor/", {"action": "remove", "code": totp.now()})
    assert TotpDevice.objects.filter(user=user).exists()


def test_one_user_cannot_enrol_another():
    user, other = UserFactory(), UserFactory()
    with pytest.raises(PermissionError):
        services.totp_enrolment_start(actor=Actor(user=other), user=user)


def test_two_factor_page_needs_login(client):
    response = client.get("/accounts/two-factor/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


@override_settings(DOORSTEP_SESSION_IDLE_TIMEOUT=600)
def test_an_idle_session_is_logged_out(client):
    user = UserFactory()
    client.force_login(user)
    assert client.get("/roi/").wsgi_request.user == user
    session = client.session
    session[LAST_SEEN_KEY] = int(time.time()) - 601
    session.save()
    response = client.get("/roi/")
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
    assert current_user(client) is None
    assert AccessEvent.objects.filter(kind=AccessEvent.Kind.SESSION_EXPIRED, user=user).exists()


@override_settings(DOORSTEP_SESSION_IDLE_TIMEOUT=600)
def test_an_active_session_stays(client):
    user = UserFactory()
    client.force_login(user)
    session = client.session
    session[LAST_SEEN_KEY] = int(time.time()) - 500
    session.save()
    assert current_user(client) == user
    assert client.session[LAST_SEEN_KEY] >= int(time.time()) - 5  # the visit renewed it


@override_settings(DOORSTEP_TRUSTED_PROXY_COUNT=1)
def test_behind_a_proxy_the_forwarded_address_is_recorded(client):
    user = UserFactory()
    log_in(client, user.username, "wrong", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9", REMOTE_ADDR="10.0.0.1")
    assert AccessEvent.objects.get(kind=AccessEvent.Kind.LOGIN_FAILED).ip == "203.0.113.9"


def test_the_admin_login_goes_through_the_second_factor_login(client):
    response = client.get("/admin/login/?next=/admin/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/?next=/admin/"
    anonymous = client.get("/admin/")
    assert anonymous.status_code == 302 and anonymous["Location"].startswith("/admin/login/")


def test_access_event_list_is_newest_first_and_filters_by_user(client):
    from apps.accounts.selectors import access_event_list

    ana, bo = UserFactory(), UserFactory()
    log_in(client, ana.username, "wrong")
    log_in(client, bo.username, "wrong")
    log_in(client, ana.username)
    kinds = [(e.user, e.kind) for e in access_event_list()]
    assert kinds == [
        (ana, AccessEvent.Kind.LOGIN),
        (bo, AccessEvent.Kind.LOGIN_FAILED),
        (ana, AccessEvent.Kind.LOGIN_FAILED),
    ]
    assert [e.kind for e in access_event_list(user=bo)] == [AccessEvent.Kind.LOGIN_FAILED]
