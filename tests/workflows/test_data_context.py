"""Control 3 end to end: every run stamps the data it used, and stale or failing data cannot pass the
policy, whatever its rules say (the freshness gate); the reviewer sees why, in red."""

import datetime as dt
import re
import sqlite3

import pytest
from django.urls import reverse

from apps.connectors import datasets
from apps.connectors.models import SourceDataset
from apps.core import clock
from apps.core.actors import Actor
from apps.policies.replay import policy_replay_request, policy_replay_run
from apps.policies.services import (
    policy_version_activate,
    policy_version_create,
    policy_version_review,
    policy_version_submit,
)
from apps.workflows import services
from apps.workflows.models import ContextSnapshot, Recommendation, RecommendationEvent, Run

SUBJECT = "ACC-0005"


@pytest.fixture
def permissive(world):
    """The churn policy replaced by one whose only rule allows everything."""
    admin = Actor(user=world.admin)
    rules = [{"name": "Everything goes", "condition": "true", "effect": "allow"}]
    version = policy_version_create(actor=admin, policy=world.churn_policy, rules=rules, note="Test: allow all")
    policy_version_submit(actor=admin, version=version)
    # A change to production rules is approved only after a replay of its rules.
    policy_replay_run(replay_id=policy_replay_request(actor=admin, version=version, days=30).pk)
    policy_version_review(actor=Actor(user=world.governance), version=version, decision="approve", comment="ok")
    return policy_version_activate(actor=admin, version=version)


def _set_account(world, key=SUBJECT, **values):
    with sqlite3.connect(world.source_db) as conn:
        for column, value in values.items():
            conn.execute(f"UPDATE accounts SET {column} = ? WHERE account_id = ?", (value, key))


def _aged(**delta) -> str:
    return (clock.now() - dt.timedelta(**delta)).isoformat()


def _run(world, key=SUBJECT) -> Run:
    run = Run.objects.create(use_case=world.churn, subject_key=key, trigger=Run.Trigger.API)
    return services.run_execute(run_id=run.pk)


def _gate(recommendation) -> list[dict]:
    return [rule for rule in recommendation.policy_decision.fired_rules if rule.get("gate")]


def test_stale_data_forces_review_whatever_the_rules_say(world, permissive):
    _set_account(world, updated_at=_aged(days=3, hours=1))
    run = _run(world)
    assert run.status == Run.Status.SUCCEEDED, run.error
    recommendation = run.recommendation
    assert recommendation.status == Recommendation.Status.QUEUED
    decision = recommendation.policy_decision
    assert decision.effect == "review" and decision.signals["freshness"] == "stale"
    gate = {"rule_id": None, "name": "Data context: Accounts is 3 days old, SLA 24 h", "effect": "review"}
    assert [rule["name"] for rule in decision.fired_rules] == ["Everything goes", gate["name"]]
    assert decision.fired_rules[1] == {**gate, "gate": "freshness"}
    assert recommendation.review_task.reasons == [decision.fired_rules[1]]
    snapshot = run.context_snapshots.get()
    assert snapshot.freshness == "stale" and snapshot.freshness_sla == dt.timedelta(hours=24)
    assert snapshot.record_ids == [SUBJECT] and snapshot.records[0]["account_id"] == SUBJECT
    context = recommendation.events.get(type=RecommendationEvent.Type.CONTEXT).payload
    assert context["freshness"] == "stale" and context["quality"] == "passed"


def test_stale_data_is_blocked_when_the_dataset_says_so(world, permissive):
    SourceDataset.objects.filter(pk=world.accounts.pk).update(stale_action=SourceDataset.StaleAction.BLOCK)
    _set_account(world, updated_at=_aged(days=5))
    recommendation = _run(world).recommendation
    assert recommendation.status == Recommendation.Status.BLOCKED and not recommendation.deliveries.exists()
    assert recommendation.policy_decision.effect == "block"
    blocked = recommendation.events.get(type=RecommendationEvent.Type.BLOCKED).payload
    assert blocked["rules"] == ["Data context: Accounts is 5 days old, SLA 24 h"]


def test_fresh_data_passes_through_untouched(world, permissive):
    _set_account(world, updated_at=_aged(hours=1))
    run = _run(world)
    recommendation = run.recommendation
    assert recommendation.status in (Recommendation.Status.APPROVED, Recommendation.Status.DELIVERING)
    assert recommendation.policy_decision.effect == "allow" and _gate(recommendation) == []
    snapshot = run.context_snapshots.get()
    assert (snapshot.freshness, snapshot.quality, snapshot.quality_errors) == ("fresh", "passed", [])


def test_data_failing_a_quality_rule_is_reviewed(world, permissive):
    SourceDataset.objects.filter(pk=world.accounts.pk).update(quality_rules={"ranges": {"nps": {"max": 3}}})
    _set_account(world, updated_at=_aged(hours=1), nps=9)
    run = _run(world)
    snapshot = run.context_snapshots.get()
    assert snapshot.quality == "failed" and snapshot.freshness == "fresh"
    assert snapshot.quality_errors == [{"record": SUBJECT, "field": "nps", "message": "nps is 9, above the maximum 3"}]
    assert run.recommendation.status == Recommendation.Status.QUEUED
    assert [rule["name"] for rule in _gate(run.recommendation)] == [
        "Data context: Accounts fails 1 quality check: nps is 9, above the maximum 3"
    ]
    assert run.recommendation.policy_decision.signals["quality"] == "failed"


def test_a_record_without_an_as_of_time_cannot_meet_the_sla(world, permissive):
    _set_account(world, updated_at=None)
    run = _run(world)
    snapshot = run.context_snapshots.get()
    assert snapshot.freshness == "stale" and snapshot.data_as_of is None
    assert _gate(run.recommendation)[0]["name"] == "Data context: Accounts has a record without an as-of time, SLA 24 h"


def test_only_the_hash_is_stored_when_the_dataset_says_so(world):
    SourceDataset.objects.filter(pk=world.accounts.pk).update(store_values=False)
    run = _run(world)
    assert run.status == Run.Status.SUCCEEDED, run.error  # the model still saw the values
    snapshot = run.context_snapshots.get()
    assert snapshot.records == [] and snapshot.values_hashed and snapshot.record_ids == [SUBJECT]
    assert snapshot.content_hash == datasets.content_hash(datasets.dataset_read(world.accounts, SUBJECT))
    assert run.recommendation.events.get(type=RecommendationEvent.Type.CONTEXT).payload["values_hashed"] is True


def test_a_retried_run_reads_hashed_values_again(world):
    """The worker died after storing the snapshot: the values exist only in the source, read again."""
    SourceDataset.objects.filter(pk=world.accounts.pk).update(store_values=False)
    run = Run.objects.select_related("use_case__source_dataset__connector").get(
        pk=Run.objects.create(use_case=world.churn, subject_key=SUBJECT, trigger=Run.Trigger.API).pk
    )
    services._run_gather_context(run)  # the first attempt's step 1
    run = services.run_execute(run_id=run.pk)  # the redelivered task
    assert run.status == Run.Status.SUCCEEDED, run.error
    assert run.context_snapshots.count() == 1 and run.model_output is not None


def test_a_retried_run_stops_when_hashed_values_changed(world):
    SourceDataset.objects.filter(pk=world.accounts.pk).update(store_values=False)
    run = Run.objects.select_related("use_case__source_dataset__connector").get(
        pk=Run.objects.create(use_case=world.churn, subject_key=SUBJECT, trigger=Run.Trigger.API).pk
    )
    snapshot = services._run_gather_context(run)
    _set_account(world, nps=0)  # the source moved on: what the run used cannot be read back
    run = services.run_execute(run_id=run.pk)
    assert run.status == Run.Status.FAILED and not Recommendation.objects.filter(run=run).exists()
    assert run.error.startswith("The data of Accounts changed since this run read it, and only its hash was kept")
    assert snapshot.content_hash[:12] in run.error


def test_a_cached_dataset_is_read_from_its_copy(world):
    SourceDataset.objects.filter(pk=world.accounts.pk).update(mode=SourceDataset.Mode.CACHED)
    world.accounts.refresh_from_db()
    sync = datasets.dataset_sync(actor=Actor.for_system("test"), dataset=world.accounts, trigger="manual")
    assert sync.status == "succeeded" and sync.rows_written == 400, sync.error
    _set_account(world, name="Renamed after the sync")
    run = _run(world)
    snapshot = run.context_snapshots.get()
    assert run.status == Run.Status.SUCCEEDED and snapshot.record_ids == [SUBJECT]
    assert snapshot.records[0]["name"] != "Renamed after the sync"


def test_the_reviewer_sees_stale_data_in_red(client, world, permissive):
    SourceDataset.objects.filter(pk=world.accounts.pk).update(store_values=False)
    _set_account(world, updated_at=_aged(days=3, hours=2))
    recommendation = _run(world).recommendation
    client.force_login(world.reviewer)

    html = client.get(reverse("reviews:task-detail", args=[recommendation.review_task.pk])).content.decode()

    assert re.search(r'class="text-danger[^"]*"[^>]*>data as of 3 days ago — SLA 24 h<', html), html
    assert "Data context: Accounts is 3 days old, SLA 24 h" in html  # why it is here
    snapshot = recommendation.run.context_snapshots.get()
    assert "Values not stored" in html and snapshot.content_hash in html


def test_fresh_data_is_not_shown_in_red(client, world, queued_recommendation):
    recommendation = queued_recommendation(world.churn)
    run = Run.objects.create(use_case=world.churn, subject_key=SUBJECT, trigger=Run.Trigger.API)
    ContextSnapshot.objects.create(
        run=run,
        dataset=world.accounts,
        source="Northwind CRM & helpdesk / accounts",
        record_ids=[SUBJECT],
        records=[{"account_id": SUBJECT, "nps": 7}],
        content_hash="0" * 64,
        data_as_of=clock.now() - dt.timedelta(hours=2, minutes=5),
        freshness=ContextSnapshot.Freshness.FRESH,
        freshness_sla=dt.timedelta(hours=24),
        quality=ContextSnapshot.Quality.PASSED,
    )
    Recommendation.objects.filter(pk=recommendation.pk).update(run=run)
    client.force_login(world.reviewer)

    html = client.get(reverse("reviews:task-detail", args=[recommendation.review_task.pk])).content.decode()

    assert re.search(r'class="text-body-secondary"[^>]*>data as of 2 h ago — SLA 24 h<', html)
    assert not re.search(r'text-danger[^"]*"[^>]*>data as of', html) and "Values not stored" not in html
