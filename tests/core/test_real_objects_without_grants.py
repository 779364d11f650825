"""Every URL that names an object, called with a real object's id by a user who holds no grant on it:
nothing is shown and nothing changes, by page, htmx fragment or API. Generated from the URL conf, so a
new URL that names an object fails here until it is listed with the object it names."""

from django.urls import reverse
from rest_framework.test import APIClient

from apps.core.actors import Actor
from apps.permissions.services import api_key_create
from apps.workflows.models import Recommendation, RecommendationEvent, Run
from tests.routes import url_patterns


def _alert(world):
    from apps.monitoring.services import alert_raise

    return alert_raise(key="no-grants", kind="test", title="Sync failed", connector=world.crm_connector)


def _alert_rule(world):
    from apps.monitoring.models import AlertRule

    return AlertRule.objects.create(name="Errors", use_case=world.churn, signal="error_rate", threshold=5)


def _cost_import(world):
    from apps.monitoring.models import CostImport

    cost_import = CostImport.objects.create(file_name="usage.csv", file_sha256="0" * 64, uploaded_by=world.admin)
    cost_import.lines.create(day="2026-01-01", connector=world.churn_model, provider_cost=1, estimated_cost=1)
    return cost_import


def _checklist_item(world):
    from apps.governance.models import UseCaseControlItem
    from apps.governance.services import control_pack_load, use_case_checklist_apply

    pack = control_pack_load(actor=Actor(user=world.governance), slug="eu-ai-act-high-risk").pack
    use_case_checklist_apply(actor=Actor(user=world.governance), use_case=world.churn, pack=pack)
    return UseCaseControlItem.objects.filter(use_case=world.churn).first()


def _approval(world, recommendation):
    """An agent's approval waiting on the queued output (a bare row: it appends no event)."""
    from apps.reviews.models import ApprovalRequest

    return ApprovalRequest.objects.get_or_create(
        recommendation=recommendation,
        defaults={"use_case": world.churn, "requested_by": world.integrator, "timeout_at": recommendation.created_at},
    )[0]


def _objects(world, recommendation, run, key):
    task = recommendation.review_task
    return {
        "api-approval-detail": {"public_id": _approval(world, recommendation).public_id},
        "api-recommendation-detail": {"pk": recommendation.pk},
        "api-recommendation-trace": {"pk": recommendation.pk},
        "api-run-detail": {"pk": run.pk},
        "api-review-task-detail": {"pk": task.pk},
        "api-review-task-decision": {"pk": task.pk},
        "reviews:queue-detail": {"pk": world.churn_queue.pk},
        "reviews:claim-next": {"pk": world.churn_queue.pk},
        "reviews:task-detail": {"pk": task.pk},
        "reviews:task-decide": {"pk": task.pk},
        "reviews:task-similar": {"pk": task.pk},
        "reviews:task-renew": {"pk": task.pk},
        "reviews:task-take-over": {"pk": task.pk},
        "reviews:queue-bulk-decide": {"pk": world.churn_queue.pk},
        "workflows:use-case-detail": {"slug": world.churn.slug},
        "workflows:use-case-transition": {"slug": world.churn.slug},
        "workflows:use-case-sampling": {"slug": world.churn.slug},
        "workflows:use-case-settings": {"slug": world.churn.slug},
        "api-use-case-transitions": {"slug": world.churn.slug},
        "policies:policy-detail": {"pk": world.churn_policy.pk},
        "api-policy-detail": {"pk": world.churn_policy.pk},
        "api-policy-version-detail": {"pk": world.replies_policy.pk, "version_pk": world.pending_version.pk},
        "api-policy-version-review": {"pk": world.replies_policy.pk, "version_pk": world.pending_version.pk},
        "policies:policy-version-review": {"pk": world.replies_policy.pk, "version_pk": world.pending_version.pk},
        "policies:rule-test": {"pk": world.churn_policy.pk},
        "policies:policy-version-detail": {"pk": world.replies_policy.pk, "version_pk": world.pending_version.pk},
        "policies:policy-version-diff": {"pk": world.replies_policy.pk, "version_pk": world.pending_version.pk},
        "policies:policy-version-submit": {"pk": world.replies_policy.pk, "version_pk": world.pending_version.pk},
        "policies:policy-version-activate": {"pk": world.replies_policy.pk, "version_pk": world.pending_version.pk},
        "policies:policy-version-schedule": {"pk": world.replies_policy.pk, "version_pk": world.pending_version.pk},
        "policies:policy-version-emergency": {"pk": world.replies_policy.pk, "version_pk": world.pending_version.pk},
        "policies:policy-version-new": {"pk": world.churn_policy.pk},
        "policies:policy-requirements": {"pk": world.churn_policy.pk},
        "policies:policy-version-replay": {"pk": world.replies_policy.pk, "version_pk": world.pending_version.pk},
        "connectors:connector-test": {"pk": world.crm_connector.pk},
        "connectors:connector-detail": {"pk": world.crm_connector.pk},
        "connectors:connector-edit": {"pk": world.crm_connector.pk},
        "connectors:connector-browse": {"pk": world.crm_connector.pk},
        "connectors:connector-access": {"pk": world.crm_connector.pk},
        "connectors:dataset-create": {"pk": world.crm_connector.pk},
        "connectors:dataset-detail": {"pk": world.crm_connector.pk, "dataset_pk": world.accounts.pk},
        "connectors:dataset-sync": {"pk": world.crm_connector.pk, "dataset_pk": world.accounts.pk},
        "connectors:dataset-upload": {"pk": world.crm_connector.pk, "dataset_pk": world.accounts.pk},
        "connectors:destination-create": {"pk": world.crm_connector.pk},
        "connectors:destination-detail": {"pk": world.crm_connector.pk, "destination_pk": world.crm_tasks.pk},
        # An alert about the CRM connector (the outsider may neither see nor act on it).
        "monitoring:alert-acknowledge": {"pk": _alert(world).pk},
        "monitoring:alert-resolve": {"pk": _alert(world).pk},
        # A rule on the churn use case, and a cost import with a line on the churn model endpoint.
        "monitor:rule-edit": {"pk": _alert_rule(world).pk},
        "monitor:cost-detail": {"pk": _cost_import(world).pk},
        "connectors:api-key-revoke": {"pk": key.pk},
        "audit:trace": {"pk": recommendation.pk},
        # A delivery row of the queued output (one the guard in delivery_send would refuse to send).
        "delivery:delivery-retry": {"pk": recommendation.deliveries.get_or_create(destination=world.crm_tasks)[0].pk},
        "api-delivery-retry": {"pk": recommendation.deliveries.get_or_create(destination=world.crm_tasks)[0].pk},
        "widget:embed-panel": {"slug": world.churn.slug},
        "widget:embed-origins": {"slug": world.churn.slug},
        "api-widget-token-create": {"slug": world.churn.slug},
        # A loaded pack, and a checklist item of the churn use case (applied by governance).
        "governance:pack-load": {"slug": "eu-ai-act-high-risk"},
        "governance:use-case-checklist": {"slug": world.churn.slug},
        "governance:use-case-checklist-apply": {"slug": world.churn.slug},
        "governance:use-case-control-item-set": {"slug": world.churn.slug, "pk": _checklist_item(world).pk},
    }


# Authenticated by a signed link, not by the user's grants: tests/widget covers forged, expired, withdrawn
# and other-subject links.
SIGNED_LINKS = {"widget:show"}
# A parameter that names no object: the export's format (what it exports is filtered like the trail page).
NOT_OBJECTS = {"audit:trail-export"}


def test_every_object_url_is_covered(world, queued_recommendation):
    named = {name for name, route in url_patterns() if "<" in route} - SIGNED_LINKS - NOT_OBJECTS
    run = Run.objects.create(use_case=world.churn, subject_key="ACC-0001", trigger="api")
    key, _ = api_key_create(actor=Actor(user=world.integrator), user=world.integrator, name="k")
    assert named == set(_objects(world, queued_recommendation(), run, key))


def test_a_user_without_grants_gets_nothing_and_changes_nothing(world, queued_recommendation):
    recommendation = queued_recommendation()
    run = Run.objects.create(use_case=world.churn, subject_key="ACC-0001", trigger="api")
    key, _ = api_key_create(actor=Actor(user=world.integrator), user=world.integrator, name="k")
    client = APIClient()
    client.force_login(world.outsider)
    events_before = RecommendationEvent.objects.count()
    for name, kwargs in _objects(world, recommendation, run, key).items():
        url = reverse(name, kwargs=kwargs)
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
