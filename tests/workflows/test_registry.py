"""The use-case lifecycle: allowed moves only, by someone who may change the use case, with a reason kept in
history; production only with all seven controls in place; the scorecard says what is missing and where."""

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.actors import Actor
from apps.core.exceptions import Conflict, NotFound, PermissionDenied, ServiceError
from apps.permissions.services import api_key_create
from apps.workflows.models import UseCase
from apps.workflows.services import USE_CASE_TRANSITIONS, ControlsFailing, use_case_transition

S = UseCase.Status
ALLOWED = {
    (S.PROPOSED, S.IN_REVIEW),
    (S.IN_REVIEW, S.PILOT),
    (S.IN_REVIEW, S.PROPOSED),
    (S.PILOT, S.PRODUCTION),
    (S.PILOT, S.PAUSED),
    (S.PILOT, S.RETIRED),
    (S.PRODUCTION, S.PAUSED),
    (S.PRODUCTION, S.RETIRED),
    (S.PAUSED, S.PILOT),
    (S.PAUSED, S.PRODUCTION),
    (S.PAUSED, S.RETIRED),
}


def _set_status(use_case, status):
    UseCase.objects.filter(pk=use_case.pk).update(status=status)
    use_case.refresh_from_db()


def test_the_table_is_the_lifecycle():
    assert {(a, b) for a, targets in USE_CASE_TRANSITIONS.items() for b in targets} == ALLOWED


@pytest.mark.parametrize("source", S.values)
def test_each_move_is_allowed_or_refused_by_the_table(world, source):
    governance = Actor(user=world.governance)
    for target in S.values:
        _set_status(world.churn, source)  # churn has all seven controls, so production is not refused for them
        if (source, target) in ALLOWED:
            moved = use_case_transition(actor=governance, use_case=world.churn, to=target, reason="Planned step")
            assert moved.status == target
        else:
            with pytest.raises(Conflict) as refused:
                use_case_transition(actor=governance, use_case=world.churn, to=target, reason="Skipping steps")
            assert refused.value.code == "invalid_transition" and refused.value.field == "to"
            world.churn.refresh_from_db()
            assert world.churn.status == source


def test_history_keeps_who_and_why(world):
    use_case_transition(
        actor=Actor(user=world.governance), use_case=world.churn, to=S.PAUSED, reason="Complaints about tone"
    )
    record = world.churn.history.order_by("-history_date", "-history_id").first()
    assert (record.status, record.history_user, record.history_change_reason) == (
        S.PAUSED,
        world.governance,
        "Complaints about tone",
    )


@pytest.mark.parametrize("reason", ["", "   ", "x" * 101])
def test_a_reason_is_required_and_fits_history(world, reason):
    with pytest.raises(ServiceError) as refused:
        use_case_transition(actor=Actor(user=world.governance), use_case=world.churn, to=S.PAUSED, reason=reason)
    assert refused.value.field == "reason"
    world.churn.refresh_from_db()
    assert world.churn.status == S.PRODUCTION


def test_without_view_it_is_not_found_and_without_change_it_is_forbidden(world, outsider):
    with pytest.raises(NotFound):
        use_case_transition(actor=Actor(user=outsider), use_case=world.churn, to=S.PAUSED, reason="r")
    with pytest.raises(PermissionDenied):
        use_case_transition(actor=Actor(user=world.executive), use_case=world.churn, to=S.PAUSED, reason="r")
    world.churn.refresh_from_db()
    assert world.churn.status == S.PRODUCTION and world.churn.history.count() == 1


def test_production_is_refused_with_the_failing_controls(world):
    # Suggested replies: no freshness SLA on Tickets, no fallback model.
    with pytest.raises(ControlsFailing) as refused:
        use_case_transition(actor=Actor(user=world.governance), use_case=world.replies, to=S.PRODUCTION, reason="Go")
    assert [control.key for control in refused.value.controls] == ["data", "workflow"]
    assert "Data context: No freshness SLA on the source Tickets" in refused.value.message
    assert "Workflow steps: No fallback model endpoint" in refused.value.message
    world.replies.refresh_from_db()
    assert world.replies.status == S.PILOT


def test_a_prohibited_use_case_never_runs(world):
    UseCase.objects.filter(pk=world.churn.pk).update(risk_tier=UseCase.RiskTier.PROHIBITED, status=S.PAUSED)
    world.churn.refresh_from_db()
    for target in (S.PILOT, S.PRODUCTION):
        with pytest.raises(Conflict) as refused:
            use_case_transition(actor=Actor(user=world.governance), use_case=world.churn, to=target, reason="r")
        assert refused.value.code == "prohibited_tier"
    assert use_case_transition(actor=Actor(user=world.governance), use_case=world.churn, to=S.RETIRED, reason="r")


# --- the page -------------------------------------------------------------------------------------------


def test_the_page_offers_the_allowed_moves_and_records_one(client, world):
    client.force_login(world.governance)
    url = reverse("workflows:use-case-detail", args=[world.churn.slug])
    page = client.get(url).content.decode()
    assert 'value="paused"' in page and 'value="retired"' in page and 'value="pilot"' not in page
    response = client.post(
        reverse("workflows:use-case-transition", args=[world.churn.slug]),
        {"to": "paused", "reason": "Model drift under investigation"},
        HTTP_HX_REQUEST="true",
    )
    body = response.content.decode()
    assert response.status_code == 200 and "HX-Request" in response["Vary"]
    assert 'id="lifecycle"' in body and "<html" not in body
    assert "The use case is now Paused." in body and "Model drift under investigation" in body
    assert 'id="use-case-status" class="badge text-bg-secondary" hx-swap-oob="true">Paused<' in body
    world.churn.refresh_from_db()
    assert world.churn.status == S.PAUSED


def test_the_page_shows_a_refusal_inline(client, world):
    client.force_login(world.governance)
    url = reverse("workflows:use-case-transition", args=[world.replies.slug])
    response = client.post(url, {"to": "production", "reason": "Go live"}, HTTP_HX_REQUEST="true")
    body = response.content.decode()
    assert response.status_code == 200
    assert "No freshness SLA on the source Tickets" in body and "No fallback model endpoint" in body
    response = client.post(url, {"to": "paused", "reason": " "}, HTTP_HX_REQUEST="true")
    assert "a reason is required" in response.content.decode()
    world.replies.refresh_from_db()
    assert world.replies.status == S.PILOT


def test_the_page_refuses_a_viewer_and_hides_from_others(client, world, outsider):
    url = reverse("workflows:use-case-transition", args=[world.churn.slug])
    client.force_login(world.executive)
    assert 'name="to"' not in client.get(reverse("workflows:use-case-detail", args=[world.churn.slug])).content.decode()
    assert client.post(url, {"to": "paused", "reason": "r"}).status_code == 403
    client.force_login(outsider)
    assert client.post(url, {"to": "paused", "reason": "r"}).status_code == 404
    world.churn.refresh_from_db()
    assert world.churn.status == S.PRODUCTION


def test_the_scorecard_links_each_missing_thing_to_its_page(client, world):
    client.force_login(world.governance)
    page = client.get(reverse("workflows:use-case-detail", args=[world.replies.slug])).content.decode()
    dataset = reverse("connectors:dataset-detail", args=[world.tickets.connector_id, world.tickets.pk])
    assert f'No freshness SLA on the source Tickets — <a href="{dataset}">fix it</a>' in page
    configuration = reverse("workflows:use-case-settings", args=[world.replies.slug])
    assert f'No fallback model endpoint — <a href="{configuration}">fix it</a>' in page


# --- the API --------------------------------------------------------------------------------------------


def _api(user):
    client = APIClient()
    client.force_authenticate(user)
    return client


def test_api_moves_with_a_reason(world):
    url = reverse("api-use-case-transitions", args=[world.churn.slug])
    response = _api(world.governance).post(url, {"to": "paused", "reason": "Quarterly check"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["status"] == "paused"
    assert world.churn.history.first().history_change_reason == "Quarterly check"


def test_api_errors_name_the_field_and_the_failing_controls(world):
    api = _api(world.governance)
    url = reverse("api-use-case-transitions", args=[world.replies.slug])
    response = api.post(url, {"to": "production", "reason": "Go"}, format="json")
    assert response.status_code == 409
    body = response.json()
    assert body["error"] == "controls_failing"
    assert [e["field"] for e in body["errors"]] == ["to", "controls.data", "controls.workflow"]
    response = api.post(url, {"to": "proposed", "reason": "Back"}, format="json")
    assert response.status_code == 409 and response.json()["error"] == "invalid_transition"
    response = api.post(url, {"to": "paused"}, format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "reason"
    response = api.post(url, {"to": "launched", "reason": "r"}, format="json")
    assert response.status_code == 400 and response.json()["errors"][0]["field"] == "to"


def test_api_permissions(world, outsider):
    url = reverse("api-use-case-transitions", args=[world.churn.slug])
    assert _api(world.executive).post(url, {"to": "paused", "reason": "r"}, format="json").status_code == 403
    assert _api(outsider).post(url, {"to": "paused", "reason": "r"}, format="json").status_code == 404
    world.churn.refresh_from_db()
    assert world.churn.status == S.PRODUCTION


@pytest.mark.parametrize(("scopes", "status"), [(["read"], 403), (["use_cases:write"], 200), ([], 200)])
def test_an_api_key_moves_a_use_case_only_with_its_scope(world, scopes, status):
    _, raw = api_key_create(actor=Actor(user=world.governance), user=world.governance, name="ops", scopes=scopes)
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    url = reverse("api-use-case-transitions", args=[world.churn.slug])
    assert client.post(url, {"to": "paused", "reason": "Key check"}, format="json").status_code == status
