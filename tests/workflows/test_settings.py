"""Use-case settings: a governance officer edits what a use case reads, calls, applies and delivers to; the
connectors must be theirs to use, contradictions are refused with the field named, a use case in production
keeps its seven controls, and every change is in history with who and why."""

import pytest
from django.urls import reverse

from apps.connectors.models import Connector
from apps.core.actors import Actor
from apps.core.exceptions import Conflict, NotFound, PermissionDenied, ServiceError
from apps.workflows.models import UseCase
from apps.workflows.services import use_case_settings_update


def _update(world, use_case, reason="Tuning", destinations=None, **values):
    return use_case_settings_update(
        actor=Actor(user=world.governance), use_case=use_case, values=values, destinations=destinations, reason=reason
    )


def test_a_change_is_saved_with_who_and_why(world):
    _update(world, world.replies, fallback_endpoint=world.churn_fallback, hourly_cost=75, reason="Add a fallback")
    world.replies.refresh_from_db()
    assert world.replies.fallback_endpoint == world.churn_fallback and world.replies.hourly_cost == 75
    record = world.replies.history.first()
    assert (record.history_user, record.history_change_reason) == (world.governance, "Add a fallback")


@pytest.mark.parametrize(
    ("values", "field"),
    [
        ({"fallback_endpoint": "model"}, "fallback_endpoint"),  # the same endpoint twice
        ({"model_endpoint": "crm"}, "model_endpoint"),  # not a model
        ({"risk_tier": "high", "risk_reason": ""}, "risk_reason"),
        ({"model_timeout_seconds": 0}, "model_timeout_seconds"),
        ({"model_max_attempts": 50}, "model_max_attempts"),
        ({"hourly_cost": -1}, "hourly_cost"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_or_contradictory_settings_are_refused_and_nothing_is_saved(world, values, field):
    values = {
        key: {"model": world.reply_model, "crm": world.crm_connector}.get(value, value) for key, value in values.items()
    }
    before = world.replies.history.count()
    with pytest.raises(ServiceError) as error:
        _update(world, world.replies, **values)
    assert error.value.field == field
    assert world.replies.history.count() == before


def test_a_prohibited_tier_is_refused_while_the_use_case_runs(world):
    with pytest.raises(ServiceError) as error:
        _update(world, world.churn, risk_tier="prohibited", risk_reason="Social scoring")
    assert error.value.field == "risk_tier"


def test_production_keeps_all_seven_controls(world):
    assert world.churn.status == UseCase.Status.PRODUCTION
    with pytest.raises(Conflict) as error:
        _update(world, world.churn, fallback_endpoint=None, reason="Drop the fallback")
    assert "Pause the use case first" in error.value.message
    world.churn.refresh_from_db()
    assert world.churn.fallback_endpoint == world.churn_fallback
    with pytest.raises(Conflict):
        _update(world, world.churn, destinations=[], reason="No destinations")
    assert world.churn.destinations.exists()


def test_a_connector_the_officer_may_not_use_is_refused(world):
    other = Connector.objects.create(name="Other model", kind=Connector.Kind.MODEL_HTTP)
    with pytest.raises(ServiceError) as error:
        _update(world, world.replies, fallback_endpoint=other)
    assert error.value.field == "fallback_endpoint" and "may not use" in error.value.message


def test_who_may_change(world, outsider):
    with pytest.raises(PermissionDenied):
        use_case_settings_update(actor=Actor(user=world.executive), use_case=world.churn, values={}, reason="r")
    with pytest.raises(NotFound):
        use_case_settings_update(actor=Actor(user=outsider), use_case=world.churn, values={}, reason="r")


def test_the_page_saves_and_shows_errors_under_the_field(client, world):
    client.force_login(world.governance)
    url = reverse("workflows:use-case-settings", args=[world.replies.slug])
    page = client.get(url)
    assert page.status_code == 200 and "Settings of" in page.content.decode()
    form = page.context["form"]
    data = {name: value for name, value in form.initial.items() if value is not None and name != "destinations"}
    data["owner"] = world.replies.owner_id
    data["destinations"] = [d.pk for d in world.replies.destinations.all()]
    for key in ("source_dataset", "model_endpoint", "policy", "review_queue"):
        data[key] = getattr(world.replies, f"{key}_id") or ""
    data.update(fallback_endpoint=world.reply_model.pk, reason="Try")
    body = client.post(url, data).content.decode()
    assert "Fallback endpoint: The fallback must be another endpoint than the model endpoint." in body
    data.update(fallback_endpoint=world.churn_fallback.pk, reason="Add a fallback")
    response = client.post(url, data)
    assert response.status_code == 302
    world.replies.refresh_from_db()
    assert world.replies.fallback_endpoint == world.churn_fallback


def test_the_page_is_forbidden_to_viewers_and_hidden_from_others(client, world, outsider):
    url = reverse("workflows:use-case-settings", args=[world.churn.slug])
    client.force_login(world.executive)
    assert client.get(url).status_code == 403
    assert client.post(url, {"reason": "x"}).status_code == 403
    client.force_login(outsider)
    assert client.get(url).status_code == 404


def test_an_officer_proposes_a_use_case_in_their_unit(client, world):
    client.force_login(world.governance)
    url = reverse("workflows:use-case-propose")
    assert "Propose a use case" in client.get(reverse("workflows:use-case-list")).content.decode()
    body = client.post(url, {"name": "Invoice triage", "business_unit": "Sales", "risk_tier": "high"}).content.decode()
    assert "Risk reason: Say why the use case is in this risk tier." in body
    assert not UseCase.objects.filter(name="Invoice triage").exists()
    response = client.post(
        url, {"name": "Invoice triage", "business_unit": "Sales", "risk_tier": "limited", "purpose": "Route invoices"}
    )
    use_case = UseCase.objects.get(name="Invoice triage")
    assert response.url == reverse("workflows:use-case-settings", args=[use_case.slug])
    assert (use_case.status, use_case.owner, use_case.business_unit) == ("proposed", world.governance, "Sales")
    assert use_case.history.first().history_change_reason == "Proposed"
    assert client.get(reverse("workflows:use-case-detail", args=[use_case.slug])).status_code == 200


def test_proposing_is_limited_to_units_one_governs(client, world, outsider):
    from apps.workflows.services import use_case_propose

    with pytest.raises(PermissionDenied):
        use_case_propose(actor=Actor(user=world.governance), name="X", business_unit="Finance", risk_tier="minimal")
    client.force_login(world.executive)
    assert client.get(reverse("workflows:use-case-propose")).status_code == 403
    client.force_login(outsider)
    assert client.post(reverse("workflows:use-case-propose"), {"name": "X"}).status_code == 403


def test_budget_and_holdout_are_settings_too(world):
    from decimal import Decimal

    _update(
        world, world.replies, monthly_budget=Decimal("250"), budget_hard_action="fallback", holdout_share=Decimal("0.1")
    )
    world.replies.refresh_from_db()
    assert (world.replies.monthly_budget, world.replies.holdout_share) == (Decimal("250"), Decimal("0.1"))
    with pytest.raises(ServiceError) as error:
        _update(world, world.replies, holdout_share=Decimal("0.9"))
    assert error.value.field == "holdout_share"
