"""Generated from the URL conf, so a new view without a permission check fails here."""

import re

import pytest

from tests.routes import url_patterns

PUBLIC = {"healthz", "readyz", "metrics", "login", "api-schema", "api-docs", "widget:show"}
SAMPLE_ARGS = {
    "int": "999999",
    "id": "999999",
    "slug": "no-such-thing",
    "str": "no-such-thing",
    "path": "no-such-thing",
    "uuid": "00000000-0000-4000-8000-000000999999",
}


def _concrete(route: str) -> str:
    route = re.sub(r"<(?:(\w+):)?\w+>", lambda m: SAMPLE_ARGS[m.group(1) or "str"], route)
    return "/" + route.lstrip("^").rstrip("$").replace("\\Z", "")


DOORS = sorted({(name, _concrete(route)) for name, route in url_patterns() if name not in PUBLIC})


def test_every_door_is_listed():
    assert len(DOORS) > 15, DOORS


@pytest.mark.django_db
@pytest.mark.parametrize(("name", "url"), DOORS)
def test_anonymous_gets_nothing(client, name, url):
    for method in ("get", "post"):
        response = getattr(client, method)(url)
        if url.startswith("/api/"):
            assert response.status_code in (401, 403, 405), (name, method, response.status_code)
            assert response["Content-Type"].startswith("application/json")
        else:
            assert response.status_code in (302, 405), (name, method, response.status_code)
            if response.status_code == 302:
                assert response["Location"].startswith("/accounts/login/"), (name, response["Location"])


@pytest.mark.parametrize(("name", "url"), [door for door in DOORS if "999999" in door[1] or "no-such" in door[1]])
def test_a_user_without_grants_gets_404_on_any_guessed_id(client, world, name, url):
    client.force_login(world.outsider)
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code in (404, 405), (name, response.status_code)
