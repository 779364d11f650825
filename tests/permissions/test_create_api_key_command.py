import io

import pytest
from django.core.management import CommandError, call_command
from rest_framework.test import APIClient

from apps.permissions.models import ApiKey, digest


def test_prints_the_key_once_and_stores_only_its_digest(world):
    out = io.StringIO()
    call_command("create_api_key", user="integrator", name="CRM widget", scope=["read"], stdout=out)
    raw = out.getvalue().strip()
    key = ApiKey.objects.get(name="CRM widget")
    assert key.key_digest == digest(raw) and raw not in str(ApiKey.objects.filter(pk=key.pk).values().get())
    assert key.scopes == ["read"] and key.history.first().history_user == world.integrator
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert {u["slug"] for u in client.get("/api/v1/use-cases").json()["results"]} == {"churn-risk", "support-replies"}


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"user": "nobody", "name": "x"}, "No user named"),
        ({"user": "integrator", "name": "  "}, "name: A name is required"),
        ({"user": "integrator", "name": "x", "scope": ["bogus"]}, "scopes: Unknown scope"),
    ],
)
def test_bad_options_are_named(world, options, message):
    with pytest.raises(CommandError, match=message):
        call_command("create_api_key", **options)
    assert not ApiKey.objects.exists()
