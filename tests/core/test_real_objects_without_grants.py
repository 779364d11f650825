"""Every URL that names an object, called with a real object's id by a user who holds no grant on it:
nothing is shown and nothing changes, by page, htmx fragment or API. Generated from the URL conf, so a
new URL that names an object fails here until it is listed with the object it names."""

from django.urls import reverse
from rest_framework.test import APIClient

from apps.workflows.models import Recommendation, RecommendationEvent
from tests.core.permission_matrix import FIXED_KWARGS, URL_KWARGS, own_side
from tests.routes import url_patterns

# Authenticated by a signed link, not by the user's grants: tests/widget covers forged, expired, withdrawn
# and other-subject links.
SIGNED_LINKS = {"widget:show"}


def test_every_object_url_is_covered():
    """The objects each URL names come from tests/core/permission_matrix.py (shared with the matrix); a URL
    parameter that names no object (the export's format) is listed there too."""
    named = {name for name, route in url_patterns() if "<" in route} - set(FIXED_KWARGS)
    assert named == set(URL_KWARGS)


def test_a_user_without_grants_gets_nothing_and_changes_nothing(world):
    side = own_side(world)
    recommendation, key = side.recommendation, side.api_key
    client = APIClient()
    client.force_login(world.outsider)
    events_before = RecommendationEvent.objects.count()
    for name, kwargs_of in URL_KWARGS.items():
        if name in SIGNED_LINKS:
            continue
        url = reverse(name, kwargs=kwargs_of(side))
        form = {"decision": "approve", "comment": "x", "edited_text": "x", "sample": "{}"}
        for method, extra in (("get", {}), ("get", {"HTTP_HX_REQUEST": "true"}), ("post", {"HTTP_HX_REQUEST": "true"})):
            response = getattr(client, method)(url, form if method == "post" else None, **extra)
            assert response.status_code in (403, 404, 405), (name, method, response.status_code)
            assert str(recommendation.content["text"]) not in response.content.decode(), name
    recommendation.refresh_from_db()
    assert recommendation.status == Recommendation.Status.QUEUED
    assert RecommendationEvent.objects.count() == events_before
    world.pending_version.refresh_from_db()
    assert world.pending_version.state == "in_review" and not world.pending_version.approvals.exists()
    key.refresh_from_db()
    assert key.revoked_at is None
