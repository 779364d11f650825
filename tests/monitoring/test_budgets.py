"""Budgets enforced in the pipeline: the month's model cost per use case and per endpoint is kept running by
the model step; at the soft share an alert (once a month), at the hard limit the use case's action — and past
it no model call is made (counted on a real OpenAI-compatible stand-in server)."""

import datetime as dt
from decimal import Decimal

import pytest

from apps.connectors.models import Connector
from apps.core import clock
from apps.core.actors import Actor
from apps.monitoring.models import Alert, MonthlySpend
from apps.monitoring.services import budget_plan
from apps.workflows.models import Recommendation, Run, UseCase
from apps.workflows.services import run_execute, run_request
from standins.openai import DEFAULT_MODELS, openai_standin

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _loopback_allowed(settings):
    settings.DOORSTEP_OUTBOUND_ALLOWLIST = ["127.0.0.1"]


@pytest.fixture(scope="module")
def llm_server():
    with openai_standin() as standin:
        yield standin


@pytest.fixture
def llm(llm_server):
    llm_server.requests.clear()
    llm_server.state.clear()
    llm_server.state.update(api_key="sk-standin-key", models=list(DEFAULT_MODELS))
    return llm_server


@pytest.fixture
def gpt(world, llm):
    """world.churn on an OpenAI-compatible stand-in, its local scikit-learn fallback kept."""
    connector = Connector(
        name="GPT churn advisor",
        kind=Connector.Kind.MODEL_OPENAI,
        config={
            "base_url": llm.url + "/v1",
            "model": "gpt-4o-mini",
            "prompt_template": "Account {name}: propose one retention step.",
            "price_per_1k_input_tokens": "150",  # dear, so one call costs more than a budget of 1.00
            "price_per_1k_output_tokens": "600",
        },
    )
    connector.set_secrets({"api_key": "sk-standin-key"})
    connector.save()
    world.churn.model_endpoint = connector
    world.churn.save()
    return connector


def _run(world, subject="ACC-0007") -> Run:
    run = run_request(
        actor=Actor(user=world.integrator), use_case=world.churn, subject_key=subject, trigger=Run.Trigger.API
    )
    return run_execute(run_id=run.pk)


def _budget(use_case, amount, action=UseCase.BudgetAction.PAUSE, soft="0.8"):
    use_case.monthly_budget = Decimal(amount)
    use_case.budget_hard_action = action
    use_case.budget_soft_share = Decimal(soft)
    use_case.save()


def _spent(**scope) -> Decimal:
    month = clock.now().date().replace(day=1)
    return MonthlySpend.objects.get(month=month, **scope).cost


def test_no_model_call_is_made_past_a_hard_limit(world, gpt, llm):
    _budget(world.churn, "1")  # the first call costs more than the whole budget
    first = _run(world)
    assert first.status == Run.Status.SUCCEEDED and len(llm.requests) == 1, first.error
    assert _spent(use_case=world.churn) == first.cost and _spent(connector=gpt) == first.cost
    for subject in ("ACC-0008", "ACC-0009"):
        run = _run(world, subject)
        assert run.status == Run.Status.FAILED
        assert "Churn risk on CRM accounts has spent" in run.error and "paused, no model call" in run.error
        assert run.model_attempts == 0 and run.model_output is None
        assert not Recommendation.objects.filter(run=run).exists()
    assert len(llm.requests) == 1  # the stand-in saw the first call only
    assert _spent(use_case=world.churn) == first.cost


def test_soft_and_hard_alerts_are_raised_once_a_month(world, gpt, llm):
    first = _run(world)
    _budget(world.churn, str(round(first.cost * Decimal("2.5"), 2)), action=UseCase.BudgetAction.REVIEW, soft="0.5")
    MonthlySpend.objects.filter(use_case=world.churn).update(soft_alerted=False)
    _run(world, "ACC-0008")  # 2 calls of 2.5: past the soft share (50 %)
    soft = Alert.objects.get(kind="budget", use_case=world.churn)
    assert soft.severity == Alert.Severity.WARNING and "at 50 %" in soft.title
    for subject in ("ACC-0009", "ACC-0010", "ACC-0011"):
        _run(world, subject)
    alerts = Alert.objects.filter(kind="budget", use_case=world.churn).order_by("pk")
    assert [(a.severity, a.occurrences) for a in alerts] == [("warning", 1), ("critical", 1)]
    assert "Monthly budget reached: Churn risk on CRM accounts" == alerts[1].title
    soft.status = Alert.Status.RESOLVED
    soft.save()
    _run(world, "ACC-0012")  # resolved by hand: not raised again this month
    assert Alert.objects.filter(kind="budget", use_case=world.churn).count() == 2


def test_hard_limit_with_fallback_calls_only_the_fallback(world, gpt, llm):
    _budget(world.churn, "1", action=UseCase.BudgetAction.FALLBACK)
    _run(world)
    run = _run(world, "ACC-0008")
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.used_fallback and run.model_endpoint == world.churn_fallback and run.model_attempts == 1
    assert len(llm.requests) == 1
    # The fallback past its own budget too: stop.
    world.churn_fallback.monthly_budget = Decimal("0.01")
    world.churn_fallback.save()
    MonthlySpend.objects.filter(connector=world.churn_fallback).update(cost=Decimal("0.01"))
    run = _run(world, "ACC-0009")
    assert run.status == Run.Status.FAILED and "Monthly budget reached on Churn classifier" in run.error
    assert run.model_attempts == 0 and len(llm.requests) == 1


def test_hard_limit_with_fallback_but_no_fallback_stops(world, gpt, llm):
    world.churn.fallback_endpoint = None
    _budget(world.churn, "1", action=UseCase.BudgetAction.FALLBACK)
    _run(world)
    run = _run(world, "ACC-0008")
    assert run.status == Run.Status.FAILED and "has no fallback endpoint: no model call" in run.error
    assert len(llm.requests) == 1


def test_hard_limit_with_review_sends_every_output_to_review(world, gpt, llm):
    before = _run(world)
    assert before.recommendation.status != Recommendation.Status.QUEUED  # the policy alone lets it through
    _budget(world.churn, "1", action=UseCase.BudgetAction.REVIEW)
    run = _run(world, "ACC-0007")
    assert run.status == Run.Status.SUCCEEDED and len(llm.requests) == 2
    assert run.recommendation.status == Recommendation.Status.QUEUED
    assert run.recommendation.review_task.queue == world.churn_queue


def test_an_endpoint_past_its_own_budget_is_skipped_for_every_use_case(world, gpt, llm):
    gpt.monthly_budget = Decimal("1")
    gpt.save()
    _run(world)
    run = _run(world, "ACC-0008")
    assert run.status == Run.Status.SUCCEEDED and run.used_fallback and len(llm.requests) == 1
    endpoint_alert = Alert.objects.get(kind="budget", connector=gpt, severity=Alert.Severity.CRITICAL)
    assert endpoint_alert.title == "Monthly budget reached: GPT churn advisor"


def test_budget_plan_reads_nothing_without_budgets(world, django_assert_num_queries):
    with django_assert_num_queries(0):
        plan = budget_plan(use_case=world.churn)
    assert plan.endpoints == [(world.churn_model, False), (world.churn_fallback, True)] and not plan.review_required
    _budget(world.churn, "10")
    with django_assert_num_queries(1):
        budget_plan(use_case=world.churn)


def test_last_month_spend_does_not_count(world, gpt, llm):
    _budget(world.churn, "3")
    last_month = (clock.now().date().replace(day=1) - dt.timedelta(days=1)).replace(day=1)
    MonthlySpend.objects.create(use_case=world.churn, month=last_month, cost=Decimal("5"))
    assert _run(world).status == Run.Status.SUCCEEDED and len(llm.requests) == 1
