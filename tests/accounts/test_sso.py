"""OpenID Connect login against a real provider (tests/accounts/oidc_provider.py) on 127.0.0.1: the whole
redirect flow, with Django's test client on Doorstep's side and HTTP to the provider."""

from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model
from django.test import override_settings

from apps.accounts.models import AccessEvent, SsoIdentity
from apps.accounts.oidc import _client
from apps.permissions import roles
from tests.accounts.oidc_provider import Provider
from tests.factories import UserFactory

CALLBACK = "http://testserver/accounts/sso/callback/"
ROLE_MAP = {"doorstep-governance": roles.GOVERNANCE, "doorstep-reviewers": roles.REVIEWER, "bogus": "Not a role"}


@pytest.fixture(scope="module")
def provider():
    provider = Provider(redirect_uri=CALLBACK).start()
    provider.add_user(
        "sub-ana", preferred_username="ana", email="ana@example.com", groups=["doorstep-governance", "staff"]
    )
    provider.add_user("sub-bo", preferred_username="bo", email="bo@example.com", groups=["staff", "bogus"])
    provider.add_user("sub-admin", preferred_username="admin", groups=["doorstep-governance"])
    yield provider
    provider.stop()


@pytest.fixture(autouse=True)
def sso_settings(provider, db):
    provider.foreign_key, provider.tamper, provider.audience = False, None, None
    _client.cache_clear()
    conf = {
        "NAME": "Test IdP",
        "DISCOVERY_URL": provider.discovery_url,
        "CLIENT_ID": provider.client.client_id,
        "CLIENT_SECRET": provider.client.client_secret,
        "SCOPE": "openid email profile groups",
        "GROUPS_CLAIM": "groups",
        "ROLE_MAP": ROLE_MAP,
    }
    with override_settings(DOORSTEP_OIDC=conf):
        yield
    _client.cache_clear()


def to_provider(client, provider, sub, next_url="/"):
    """Press "Sign in with …", let the provider approve `sub`; return the callback URL it sends back."""
    provider.signed_in = sub
    start = client.post("/accounts/sso/start/", {"next": next_url})
    assert start.status_code == 302 and start["Location"].startswith(f"{provider.issuer}/authorize?")
    answer = requests.get(start["Location"], allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    back = urlsplit(answer.headers["Location"])
    assert f"{back.scheme}://{back.netloc}{back.path}" == CALLBACK
    return f"{back.path}?{back.query}"


def sso_login(client, provider, sub, next_url="/"):
    return client.get(to_provider(client, provider, sub, next_url))


def logged_in_as(client):
    response = client.get("/")
    return response.wsgi_request.user if response.wsgi_request.user.is_authenticated else None


def test_login_page_offers_the_provider(client):
    page = client.get("/accounts/login/")
    assert "Sign in with Test IdP" in page.content.decode()


def test_login_page_without_sso_has_no_button(client):
    with override_settings(DOORSTEP_OIDC={"NAME": "X", "DISCOVERY_URL": "", "CLIENT_ID": ""}):
        assert "Sign in with" not in client.get("/accounts/login/").content.decode()


def test_mapped_group_user_is_created_logged_in_and_gets_the_role(client, provider):
    response = sso_login(client, provider, "sub-ana", next_url="/roi/")
    assert response.status_code == 302 and response["Location"] == "/roi/"
    user = logged_in_as(client)
    assert user is not None and user.username == "ana" and user.email == "ana@example.com"
    assert roles.role_of(user) == roles.GOVERNANCE
    assert set(user.groups.values_list("name", flat=True)) == {roles.GOVERNANCE}
    assert not user.has_usable_password()
    assert SsoIdentity.objects.get(user=user).issuer == provider.issuer
    event = AccessEvent.objects.get(kind=AccessEvent.Kind.LOGIN, user=user)
    assert event.method == AccessEvent.Method.SSO and event.detail == f"roles: {roles.GOVERNANCE}"
    assert event.ip == "127.0.0.1"


def test_unmapped_user_logs_in_without_a_role(client, provider):
    sso_login(client, provider, "sub-bo")
    user = logged_in_as(client)
    assert user.username == "bo" and roles.role_of(user) is None
    assert not user.groups.exists()  # "bogus" maps to a name that is no role: ignored


def test_roles_follow_the_claim_at_every_login_and_other_groups_stay(client, provider):
    sso_login(client, provider, "sub-ana")
    user = get_user_model().objects.get(username="ana")
    team = user.groups.create(name="Churn reviewers")
    client.logout()
    provider.users["sub-ana"].claims["groups"] = ["doorstep-reviewers"]
    try:
        sso_login(client, provider, "sub-ana")
    finally:
        provider.users["sub-ana"].claims["groups"] = ["doorstep-governance", "staff"]
    assert logged_in_as(client).pk == user.pk
    assert set(user.groups.values_list("name", flat=True)) == {roles.REVIEWER, team.name}
    assert get_user_model().objects.filter(username="ana").count() == 1


def _refused(client, response, reason_part):
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"
    assert logged_in_as(client) is None
    page = client.get("/accounts/login/").content.decode()
    assert "Single sign-on failed" in page
    event = AccessEvent.objects.get(kind=AccessEvent.Kind.SSO_REFUSED)
    assert reason_part in event.detail
    return event


def test_id_token_signed_with_a_foreign_key_is_refused(client, provider):
    provider.foreign_key = True
    _refused(client, sso_login(client, provider, "sub-ana"), "could not be verified")
    assert not get_user_model().objects.filter(username="ana").exists()


def test_tampered_id_token_is_refused(client, provider):
    provider.tamper = {"groups": ["doorstep-governance"]}
    _refused(client, sso_login(client, provider, "sub-bo"), "could not be verified")
    assert not get_user_model().objects.filter(username="bo").exists()


def test_id_token_issued_to_another_client_is_refused(client, provider):
    provider.audience = "some-other-app"
    _refused(client, sso_login(client, provider, "sub-ana"), "could not be verified")
    assert not get_user_model().objects.filter(username="ana").exists()


def test_state_mismatch_is_refused(client, provider):
    callback = to_provider(client, provider, "sub-ana")
    query = parse_qs(urlsplit(callback).query)
    forged = f"/accounts/sso/callback/?code={query['code'][0]}&state=not-the-state-we-sent"
    _refused(client, client.get(forged), "could not be verified")


def test_a_callback_from_another_browser_is_refused(client, provider):
    """The code and state were issued to one browser session; a second session cannot redeem them."""
    from django.test import Client

    callback = to_provider(client, provider, "sub-ana")
    other = Client()
    _refused(other, other.get(callback), "could not be verified")


def test_an_existing_local_account_is_not_taken_over(client, provider):
    local = UserFactory(username="admin")
    event = _refused(client, sso_login(client, provider, "sub-admin"), "local account")
    assert event.username == "admin" and not local.sso_identities.exists()


def test_error_from_the_provider_is_refused(client, provider):
    client.post("/accounts/sso/start/")
    _refused(client, client.get("/accounts/sso/callback/?error=access_denied&state=x"), "could not be verified")


def test_sso_start_needs_post_and_configuration(client):
    assert client.get("/accounts/sso/start/").status_code == 405
    with override_settings(DOORSTEP_OIDC={"NAME": "X", "DISCOVERY_URL": "", "CLIENT_ID": ""}):
        response = client.post("/accounts/sso/start/")
    assert response.status_code == 302 and response["Location"] == "/accounts/login/"


def test_unreachable_provider_is_a_clear_message_not_a_500(client):
    with override_settings(
        DOORSTEP_OIDC={
            "NAME": "X",
            "DISCOVERY_URL": "http://127.0.0.1:9/.well-known/openid-configuration",
            "CLIENT_ID": "c",
            "CLIENT_SECRET": "s",
            "SCOPE": "openid",
        }
    ):
        _client.cache_clear()
        _refused(client, client.post("/accounts/sso/start/"), "could not be reached")
