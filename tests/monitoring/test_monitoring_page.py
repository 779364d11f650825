"""The monitoring page: figures per use case and model endpoint over a window, aggregated in the database
with a fixed number of queries, and only for the use cases the user may see."""

import datetime as dt
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from apps.connectors.models import Destination
from apps.core import clock
from apps.core.actors import Actor
from apps.delivery.models import Delivery
from apps.monitoring import selectors
from apps.permissions.services import object_permission_grant
from apps.workflows.events import event_append
from apps.workflows.models import ContextSnapshot, Run
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db
HTMX = {"HTTP_HX_REQUEST": "true"}


def _run(use_case, *, ago=dt.timedelta(hours=1), status=Run.Status.SUCCEEDED, latency=None, endpoint=None, **extra):
    return Run.objects.create(
        use_case=use_case,
        subject_key="S",
        trigger=Run.Trigger.API,
        status=status,
        created_at=clock.now() - ago,
        model_latency_ms=latency,
        model_endpoint=endpoint,
        **extra,
    )


@pytest.fixture
def figures(world, queued_recommendation):
    """Churn: 5 runs in the last day (4 answered at 20/40/80/400 ms, one of them by the fallback; 1 failed),
    one 3 days ago; a review item overdue; a stale context; a failed delivery; 4 shown, 1 accepted.
    Replies: one run."""
    model, fallback = world.churn_model, world.churn_fallback
    for latency in (20, 40, 80):
        _run(world.churn, latency=latency, endpoint=model, cost=Decimal("0.1"), tokens_in=10, tokens_out=5)
    _run(world.churn, latency=400, endpoint=fallback, used_fallback=True, cost=Decimal("0.05"), tokens_in=10)
    failed = _run(world.churn, status=Run.Status.FAILED)
    _run(world.churn, ago=dt.timedelta(days=3), latency=30, endpoint=model, cost=Decimal("1"))
    _run(world.replies, latency=50, endpoint=world.reply_model, cost=Decimal("7"))
    ContextSnapshot.objects.create(
        run=failed, dataset=world.accounts, source="x", content_hash="h", freshness=ContextSnapshot.Freshness.STALE
    )
    recommendation = queued_recommendation()
    recommendation.review_task.__class__.objects.filter(pk=recommendation.review_task.pk).update(
        due_at=clock.now() - dt.timedelta(minutes=5)
    )
    destination = Destination.objects.get(pk=world.crm_tasks.pk)
    Delivery.objects.create(recommendation=recommendation, destination=destination, status=Delivery.Status.FAILED)
    actor = Actor(user=world.integrator)
    for kind in ["shown"] * 4 + ["accepted"]:
        event_append(recommendation=recommendation, type=kind, actor=actor)
    return recommendation


def test_use_case_figures_over_a_day(world, figures):
    now = clock.now()
    row = selectors.use_case_figures(use_case_ids=[world.churn.pk], since=now - dt.timedelta(days=1), until=now)[
        world.churn.pk
    ]
    assert row["runs"] == 5 and row["failed"] == 1 and row["error_rate"] == 20.0  # 1 of 5 finished
    assert row["fallback_rate"] == 25.0  # 1 of the 4 answers
    # Histogram: 2 of 4 answers ≤ 50 ms, so p50 is the bound 50; p95 (rank 3.8) lies in (250, 500]: 250 + 250 × 0.8.
    assert row["latency_p50"] == 50.0 and row["latency_p95"] == 450.0
    assert row["cost"] == Decimal("0.35") and row["cost_per_day"] == Decimal("0.35")
    assert row["tokens_in"] == 40 and row["tokens_out"] == 15
    assert row["backlog"] == 1 and row["overdue"] == 1 and row["sla_breaches"] == 1
    assert row["freshness_breaches"] == 1 and row["delivery_failures"] == 1
    assert row["shown"] == 4 and row["accepted"] == 1 and row["acceptance_rate"] == 25.0
    week = selectors.use_case_figures(use_case_ids=[world.churn.pk], since=now - dt.timedelta(days=7), until=now)
    assert week[world.churn.pk]["runs"] == 6 and week[world.churn.pk]["cost_per_day"] == Decimal("0.1929")


def test_endpoint_figures_are_per_endpoint(world, figures):
    now = clock.now()
    rows = selectors.endpoint_figures(since=now - dt.timedelta(days=1), until=now)
    assert rows[world.churn_model.pk]["runs"] == 3 and rows[world.churn_model.pk]["cost"] == Decimal("0.3")
    assert rows[world.churn_fallback.pk]["fallback_rate"] == 100.0
    assert rows[world.reply_model.pk]["cost"] == Decimal("7")
    only_churn = selectors.endpoint_figures(since=now - dt.timedelta(days=1), until=now, use_case_ids=[world.churn.pk])
    assert world.reply_model.pk not in only_churn


def test_the_page_shows_only_the_use_cases_the_user_may_see(client, world, figures):
    churn_only = UserFactory(username="churn-watcher")
    group = Group.objects.create(name="Churn watchers")
    churn_only.groups.add(group)
    object_permission_grant(group=group, codename="view_usecase", obj=world.churn)
    client.force_login(churn_only)
    body = client.get(reverse("monitor:overview")).content.decode()
    assert world.churn.name in body and world.replies.name not in body
    assert world.reply_model.name not in body and world.churn_model.name in body  # endpoints of its use cases only
    assert "1 (1)" in body and "25.0 %" in body  # backlog (overdue), acceptance
    client.force_login(world.executive)
    body = client.get(reverse("monitor:overview")).content.decode()
    assert world.churn.name in body and world.replies.name in body
    client.force_login(world.outsider)
    body = client.get(reverse("monitor:overview")).content.decode()
    assert "No use case to show." in body and world.churn.name not in body


def test_the_window_is_swapped_by_htmx(client, world, figures):
    client.force_login(world.executive)
    response = client.get(reverse("monitor:overview") + "?window=7d", **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and body.lstrip().startswith('<div id="figures">')
    assert "Vary" in response and "HX-Request" in response["Vary"]
    assert '<td class="text-end">6</td>' in body  # the run of 3 days ago is in the week
    day = client.get(reverse("monitor:overview") + "?window=bogus", **HTMX).content.decode()
    assert '<td class="text-end">5</td>' in day  # an unknown window falls back to 24 h


def test_the_page_costs_a_fixed_number_of_queries(client, world, figures, django_assert_max_num_queries):
    client.force_login(world.executive)
    client.get(reverse("monitor:overview"))  # warm the session and caches
    with django_assert_max_num_queries(14) as first:
        client.get(reverse("monitor:overview"))
    for _ in range(30):
        _run(world.churn, latency=70, endpoint=world.churn_model, cost=Decimal("0.1"))
    with django_assert_max_num_queries(len(first.captured_queries)):
        client.get(reverse("monitor:overview"))


def test_anonymous_is_sent_to_login(client):
    assert client.get(reverse("monitor:overview")).status_code == 302
