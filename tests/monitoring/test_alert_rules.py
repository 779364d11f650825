"""Alert rules: edited on a page by whoever may change what they watch (history keeps who and why), evaluated
by beat: a firing rule opens an alert and notifies by e-mail and signed webhook once, recovery resolves it."""

import datetime as dt
import json
import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from django.contrib.auth.models import Group
from django.core import mail
from django.urls import reverse

from apps.connectors.models import Connector
from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.delivery import webhooks
from apps.monitoring import services
from apps.monitoring.models import Alert, AlertRule
from apps.monitoring.tasks import alert_rules_evaluate_task
from apps.permissions import roles
from apps.permissions.services import object_permission_grant
from apps.workflows.events import event_append
from apps.workflows.models import Run
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}
SECRET = "whsec-alert-secret"


@pytest.fixture
def receiver(settings):
    """A local webhook receiver that verifies every request with the documented helper."""
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]
    received = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            body = self.rfile.read(int(self.headers["content-length"]))
            headers = {k.lower(): v for k, v in self.headers.items()}
            received.append((headers, json.loads(body), webhooks.verify(SECRET, headers, body)))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hook = Connector(
        name="Ops hook", kind=Connector.Kind.WEBHOOK, config={"url": f"http://127.0.0.1:{server.server_port}/"}
    )
    hook.set_secrets({"signing_secret": SECRET})
    hook.save()
    object_permission_grant(group=Group.objects.get(name=roles.GOVERNANCE), codename="view_connector", obj=hook)
    yield hook, received
    server.shutdown()
    server.server_close()


def _rule(world, **fields) -> AlertRule:
    values = {
        "name": "Churn errors",
        "use_case": world.churn,
        "signal": AlertRule.Signal.ERROR_RATE,
        "threshold": Decimal("10"),
        **fields,
    }
    return services.alert_rule_save(actor=Actor(user=world.governance), rule=AlertRule(**values), reason="Watch it")


def _runs(use_case, n, *, status=Run.Status.SUCCEEDED, ago=dt.timedelta(hours=1), **extra):
    for _ in range(n):
        Run.objects.create(
            use_case=use_case, subject_key="S", trigger="api", status=status, created_at=clock.now() - ago, **extra
        )


def _evaluate(django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        return alert_rules_evaluate_task()


def test_a_threshold_rule_opens_notifies_once_and_resolves_on_recovery(
    world, receiver, django_capture_on_commit_callbacks
):
    hook, received = receiver
    rule = _rule(world, notify_emails="ops@example.com, lead@example.com", notify_webhook=hook, severity="critical")
    _runs(world.churn, 8)
    _runs(world.churn, 2, status=Run.Status.FAILED)  # 20 % of 10 finished runs
    assert _evaluate(django_capture_on_commit_callbacks) == {"evaluated": 1, "fired": 1, "opened": 1, "resolved": 0}
    alert = Alert.objects.get(key=rule.alert_key)
    assert alert.status == Alert.Status.OPEN and alert.use_case == world.churn and alert.severity == "critical"
    assert alert.title == "Churn errors: error rate (%) 20.0" and "threshold 10" in alert.detail
    (message,) = mail.outbox
    assert message.to == ["ops@example.com", "lead@example.com"] and message.subject.startswith("[Critical] Alert:")
    ((headers, body, verified),) = received
    assert verified and body["type"] == "alert.firing" and body["data"]["use_case"] == world.churn.slug
    assert headers["webhook-id"] == f"alert-{alert.pk}-firing"
    rule.refresh_from_db()
    assert rule.last_value == Decimal("20") and rule.last_evaluated_at is not None

    _evaluate(django_capture_on_commit_callbacks)  # still firing: one more occurrence, nobody told twice
    alert.refresh_from_db()
    assert alert.occurrences == 2 and len(mail.outbox) == 1 and len(received) == 1

    Run.objects.filter(status=Run.Status.FAILED).update(created_at=clock.now() - dt.timedelta(days=2))
    assert _evaluate(django_capture_on_commit_callbacks)["resolved"] == 1
    alert.refresh_from_db()
    assert alert.status == Alert.Status.RESOLVED
    assert alert.history.order_by("history_date").last().history_change_reason == "Recovered"
    assert mail.outbox[-1].subject.startswith("[Critical] Resolved:") and received[-1][1]["type"] == "alert.resolved"


def test_too_few_samples_do_not_fire(world, django_capture_on_commit_callbacks):
    _rule(world, min_samples=20)
    _runs(world.churn, 1, status=Run.Status.FAILED)
    assert _evaluate(django_capture_on_commit_callbacks)["fired"] == 0
    assert not Alert.objects.exists()


def test_acceptance_down_20_percent_week_over_week(world, queued_recommendation, django_capture_on_commit_callbacks):
    rule = _rule(
        world,
        name="Acceptance falling",
        signal=AlertRule.Signal.ACCEPTANCE_RATE,
        condition=AlertRule.Condition.DROP,
        threshold=Decimal("20"),
        window=AlertRule.Window.WEEK,
    )
    recommendation = queued_recommendation()
    actor = Actor(user=world.integrator)
    now = clock.now()
    for days, shown, accepted in ((10, 10, 5), (2, 10, 3)):  # previous week 50 %, this week 30 %
        at = now - dt.timedelta(days=days)
        for kind in ["shown"] * shown + ["accepted"] * accepted:
            event_append(recommendation=recommendation, type=kind, actor=actor, at=at)
    _evaluate(django_capture_on_commit_callbacks)
    alert = Alert.objects.get(key=rule.alert_key)
    assert "went from 50.0 to 30.0 (-40.0 %)" in alert.detail
    rule.threshold = Decimal("50")  # a 40 % drop is within a 50 % tolerance: recovered
    services.alert_rule_save(actor=Actor(user=world.governance), rule=rule, reason="Less noise")
    _evaluate(django_capture_on_commit_callbacks)
    alert.refresh_from_db()
    assert alert.status == Alert.Status.RESOLVED


def test_an_endpoint_rule_watches_latency_over_every_use_case(world, django_capture_on_commit_callbacks):
    rule = services.alert_rule_save(
        actor=Actor(user=world.integrator),  # may change the endpoint, not the use cases
        rule=AlertRule(
            name="Slow classifier", connector=world.churn_model, signal="latency_p95", threshold=Decimal("1000")
        ),
        reason="Latency SLO",
    )
    _runs(world.churn, 3, model_endpoint=world.churn_model, model_latency_ms=3000)
    _evaluate(django_capture_on_commit_callbacks)
    alert = Alert.objects.get(key=rule.alert_key)
    assert alert.connector == world.churn_model and alert.use_case is None


def test_rule_rules_name_the_field_at_fault(world):
    admin = Actor(user=world.admin)
    cases = [
        ({"connector": world.churn_model, "signal": "latency_p95"}, "use_case"),  # both scopes
        ({"use_case": None, "connector": world.churn_model, "signal": "acceptance_rate"}, "signal"),
        ({"signal": "backlog", "condition": "drop"}, "condition"),
        ({"notify_emails": "ops@example.com, not-an-address"}, "notify_emails"),
        ({"notify_webhook": world.crm_connector}, "notify_webhook"),
    ]
    for fields, field in cases:
        values = {"name": "R", "use_case": world.churn, "signal": "error_rate", "threshold": 1, **fields}
        with pytest.raises(ServiceError) as error:
            services.alert_rule_save(actor=admin, rule=AlertRule(**values), reason="x")
        assert error.value.field == field, (fields, error.value.message)
    with pytest.raises(ServiceError):
        services.alert_rule_save(
            actor=Actor(user=world.executive),
            rule=AlertRule(name="R", use_case=world.churn, signal="runs", threshold=1),
            reason="x",
        )
    assert not AlertRule.objects.exists()


def test_rules_are_edited_on_a_page_with_history(client, world):
    client.force_login(world.governance)
    form = {
        "name": "Churn cost",
        "use_case": world.churn.pk,
        "signal": "cost",
        "condition": "above",
        "threshold": "50",
        "window": "24h",
        "min_samples": "1",
        "severity": "warning",
        "enabled": "on",
        "reason": "Cost guard",
    }
    response = client.post(reverse("monitor:rule-create"), form, **HTMX)
    assert response.status_code == 200 and response["HX-Redirect"] == reverse("monitor:rule-list")
    rule = AlertRule.objects.get(name="Churn cost")
    response = client.post(
        reverse("monitor:rule-edit", args=[rule.pk]), {**form, "threshold": "-", "reason": ""}, **HTMX
    )
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith('<form id="rule-form"')
    assert "Enter a number." in body and "This field is required." in body
    client.post(reverse("monitor:rule-edit", args=[rule.pk]), {**form, "threshold": "80", "reason": "Raise it"})
    rule.refresh_from_db()
    assert rule.threshold == Decimal("80")
    history = list(rule.history.order_by("history_date").values_list("history_user__username", "history_change_reason"))
    assert history == [("governance", "Cost guard"), ("governance", "Raise it")]
    page = client.get(reverse("monitor:rule-edit", args=[rule.pk])).content.decode()
    assert "governance: Raise it" in page and "governance: Cost guard" in page


def test_who_sees_and_changes_rules(client, world):
    churn_rule = _rule(world)
    replies_rule = _rule(world, name="Replies errors", use_case=world.replies)
    watcher = UserFactory(username="churn-watcher")
    group = Group.objects.create(name="Churn watchers")
    watcher.groups.add(group)
    object_permission_grant(group=group, codename="view_usecase", obj=world.churn)
    client.force_login(watcher)
    body = client.get(reverse("monitor:rule-list")).content.decode()
    assert "Churn errors" in body and "Replies errors" not in body and ">Edit<" not in body
    assert client.get(reverse("monitor:rule-edit", args=[churn_rule.pk])).status_code == 403  # sees, may not change
    assert client.get(reverse("monitor:rule-edit", args=[replies_rule.pk]), **HTMX).status_code == 404
    response = client.post(reverse("monitor:rule-create"), {"name": "x", "use_case": world.churn.pk, "reason": "x"})
    assert response.status_code == 400 and "Select a valid choice" in response.content.decode()
    with pytest.raises(PermissionDenied):
        churn_rule.threshold = 1
        services.alert_rule_save(actor=Actor(user=watcher), rule=churn_rule, reason="x")
    client.force_login(world.outsider)
    assert "No alert rule yet." in client.get(reverse("monitor:rule-list")).content.decode()
    assert client.post(reverse("monitor:rule-edit", args=[churn_rule.pk]), {}).status_code == 404
