"""Replay before activation: the numbers equal a direct re-evaluation of the same outputs, progress reaches
the total, an edit makes a replay stale, and only officers of the policy may start one."""

from collections import Counter
from datetime import timedelta

import pytest
from django.urls import reverse

from apps.core import clock
from apps.core.actors import Actor
from apps.core.exceptions import PermissionDenied, ServiceError
from apps.policies import evaluation, replay
from apps.policies.models import PolicyReplay, PolicyVersion
from apps.policies.services import policy_version_create
from apps.reviews.models import ReviewVerdict
from apps.workflows.demo.world import CHURN_RULES
from apps.workflows.models import Recommendation, Run
from apps.workflows.services import Draft, recommendation_submit, run_request

# The draft: the low-confidence bar raised to 0.8, large discounts blocked outright, and a new rule.
DRAFT_RULES = [
    {**CHURN_RULES[0], "condition": "signals.confidence < 0.8"},
    {**CHURN_RULES[1], "effect": "block"},
    *CHURN_RULES[2:],
    {"name": "Very long reply", "condition": "size(output.text) > 120", "effect": "review"},
]
LONG = (
    "A long answer that explains every step of the renewal, the pricing page, the contract and the e-mail "
    "that follows when the order is ready."
)
OUTPUTS = [  # text, confidence, discount
    ("Call the sponsor this week.", 0.9, 5),  # allow
    ("Call the sponsor this week.", 0.75, 5),  # allow → review
    ("Call the sponsor this week.", 0.5, 5),  # review
    ("Offer a 20% discount to renew.", 0.9, 20),  # review → block
    ("Ask jane@acme.example to join the review.", 0.9, 0),  # redact
    (LONG, 0.95, 0),  # allow → review
    ("Offer 25% and write to bob@acme.example.", 0.75, 25),  # review → block
]


def _submit(world, text, confidence, discount=0, subject="ACC-0100", use_case=None):
    (recommendation,) = recommendation_submit(
        actor=Actor(user=world.integrator),
        use_case=use_case or world.churn,
        drafts=[
            Draft(
                subject_key=subject,
                content={"text": text},
                confidence=confidence,
                proposed_action={"type": "crm_task", "discount_pct": discount},
                context={"subject": "Renewal"},
            )
        ],
    )
    return recommendation


@pytest.fixture
def outputs(world):
    made = [_submit(world, *output, subject=f"ACC-{i:04}") for i, output in enumerate(OUTPUTS)]
    old = _submit(world, "Offer a 30% discount.", 0.9, 30, subject="ACC-OLD")
    Recommendation.objects.filter(pk=old.pk).update(created_at=clock.now() - timedelta(days=40))
    return made


@pytest.fixture
def draft(world):
    return policy_version_create(actor=Actor(user=world.governance), policy=world.churn_policy, rules=DRAFT_RULES)


def _replay(world, version, days=30, django_capture_on_commit_callbacks=None):
    with django_capture_on_commit_callbacks(execute=True):
        started = replay.policy_replay_request(actor=Actor(user=world.governance), version=version, days=days)
    started.refresh_from_db()
    return started


def _direct(version, recommendation, use_case):
    """The verdict of `version` on one stored output, computed here from the stored rows."""
    decision = recommendation.policy_decision
    return evaluation.evaluate(
        version,
        output=recommendation.content,
        context={},  # an outside model's context is not stored
        action=recommendation.proposed_action,
        use_case={"slug": use_case.slug, "risk_tier": use_case.risk_tier, "business_unit": use_case.business_unit},
        subject=recommendation.subject_key,
        confidence=recommendation.confidence,
        freshness=decision.signals["freshness"],
        cost=float(recommendation.cost),
        quality=decision.signals["quality"],
    )


def test_replay_numbers_equal_a_direct_re_evaluation(
    world, outputs, draft, monkeypatch, django_capture_on_commit_callbacks
):
    monkeypatch.setattr(replay, "CHUNK", 3)  # several chunks
    baseline = PolicyVersion.objects.get(policy=world.churn_policy, state="active")
    done = _replay(world, draft, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)

    assert done.status == PolicyReplay.Status.SUCCEEDED, done.error
    assert done.baseline == baseline
    assert done.total == done.done == len(outputs)  # the 40-day-old output is outside the window
    expected, hits, flips = Counter(), Counter(), 0
    for recommendation in Recommendation.objects.filter(pk__in=[r.pk for r in outputs]):
        old = _direct(baseline, recommendation, world.churn).effect
        new = _direct(draft, recommendation, world.churn)
        expected[(old, new.effect)] += 1
        flips += old != new.effect
        hits.update(f["name"] for f in new.fired if "error" not in f)
    report = done.report
    got = Counter({(old, new): n for old, row in report["matrix"].items() for new, n in row.items()})
    assert (
        got
        == expected
        == Counter(
            {
                ("allow", "allow"): 1,
                ("allow", "review"): 2,
                ("review", "review"): 1,
                ("review", "block"): 2,
                ("redact", "redact"): 1,
            }
        )
    )
    assert report["flipped"] == flips > 0
    assert {rule["name"]: rule["hits"] for rule in report["rule_hits"]} == {
        r["name"]: hits[r["name"]] for r in DRAFT_RULES
    }
    assert len(report["sample"]) == flips
    assert {(case["from"], case["to"]) for case in report["sample"]} <= {k for k in expected if k[0] != k[1]}
    assert any("[email redacted]" in case["text"] for case in report["sample"])
    assert all("bob@acme.example" not in case["text"] for case in report["sample"])
    # An outside model's context is not stored; these rules do not read it, so the rebuilt baseline agrees
    # with every stored decision.
    assert report["context_missing"] == len(outputs)
    assert report["stored_agree"] == report["stored_compared"] == len(outputs)
    assert replay.replay_is_current(draft)


def test_review_load_uses_the_median_handling_time(world, outputs, draft, django_capture_on_commit_callbacks):
    queued = Recommendation.objects.filter(pk__in=[r.pk for r in outputs], status="queued_for_review")
    for seconds, recommendation in zip((60, 120, 600), queued, strict=False):
        ReviewVerdict.objects.create(
            task=recommendation.review_task, reviewer=world.reviewer, decision="approve", seconds_spent=seconds
        )
    report = _replay(world, draft, days=7, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks).report
    (row,) = report["use_cases"]
    reviews = Counter(new for row_ in report["matrix"].values() for new, n in row_.items() for _ in range(n))["review"]
    baseline_reviews = sum(report["matrix"].get("review", {}).values())
    assert row["minutes_per_review"] == 2.0 and "median of 3 verdicts" in row["minutes_basis"]
    assert row["review_delta_per_week"] == reviews - baseline_reviews  # a 7-day window is one week
    assert report["reviewer_hours_per_week"] == round((reviews - baseline_reviews) * 2 / 60, 2)
    hourly = float(world.churn.hourly_cost)
    assert float(row["cost_delta_per_week"]) == pytest.approx((reviews - baseline_reviews) * 2 / 60 * hourly, abs=0.01)


def test_without_verdicts_the_manual_minutes_are_the_basis(world, outputs, draft, django_capture_on_commit_callbacks):
    report = _replay(world, draft, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks).report
    (row,) = report["use_cases"]
    assert row["minutes_per_review"] == float(world.churn.manual_minutes_per_item)
    assert "manual minutes" in row["minutes_basis"]


def test_a_run_replays_with_its_stored_context(world, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        run = run_request(
            actor=Actor(user=world.integrator), use_case=world.churn, subject_key="ACC-0007", trigger=Run.Trigger.API
        )
    run.refresh_from_db()
    assert run.status == Run.Status.SUCCEEDED, run.error
    rules = [{"name": "Named account", "condition": 'context.account_id == "ACC-0007"', "effect": "review"}]
    version = policy_version_create(actor=Actor(user=world.governance), policy=world.churn_policy, rules=rules)
    report = _replay(world, version, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks).report
    assert report["context_missing"] == 0
    assert report["rule_hits"] == [{"name": "Named account", "effect": "review", "hits": 1, "errors": 0}]
    assert report["stored_agree"] == report["stored_compared"] == 1


def test_a_rule_on_an_unstored_context_shows_in_the_fidelity(world, django_capture_on_commit_callbacks):
    """The support policy's privacy rule reads context.subject, which an outside model's output did not keep:
    the rebuilt baseline fails safe to review there, and the report says it disagrees with what happened."""
    for i in range(3):
        _submit(world, "Reset the password from the login page.", 0.9, subject=f"TCK-{i}", use_case=world.replies)
    version = PolicyVersion.objects.get(policy=world.replies_policy, state="in_review")
    report = _replay(world, version, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks).report
    assert report["context_missing"] == report["stored_compared"] == 3
    assert report["stored_agree"] == 0
    assert report["matrix"] == {"review": {"review": 3}}


def test_an_edit_after_the_replay_makes_it_stale(world, outputs, draft, django_capture_on_commit_callbacks):
    assert not replay.replay_is_current(draft)
    _replay(world, draft, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    assert replay.replay_is_current(draft)
    rule = draft.rules.get(name="Low confidence")
    rule.condition = "signals.confidence < 0.3"
    rule.save()
    assert not replay.replay_is_current(draft)
    # Replaying the edited rules makes it current again.
    _replay(world, draft, django_capture_on_commit_callbacks=django_capture_on_commit_callbacks)
    assert replay.replay_is_current(draft)


def test_a_redelivered_task_restarts_and_a_finished_one_is_left(
    world, outputs, draft, django_capture_on_commit_callbacks
):
    from apps.policies.tasks import policy_replay_task

    started = PolicyReplay.objects.create(
        version=draft, baseline=None, rules_hash="x", requested_by=world.governance, status="running", done=5
    )
    assert policy_replay_task(started.pk) == "succeeded"
    started.refresh_from_db()
    assert started.done == started.total == len(outputs) and started.rules_hash == replay.rules_hash(draft)
    finished_at = started.finished_at
    assert policy_replay_task(started.pk) == "succeeded"
    started.refresh_from_db()
    assert started.finished_at == finished_at
    # No baseline (a policy's first version): the outputs are compared with no rules, i.e. allow.
    assert set(started.report["matrix"]) == {"allow"}


def test_only_officers_of_the_policy_replay_in_range(world, draft):
    with pytest.raises(PermissionDenied):
        replay.policy_replay_request(actor=Actor(user=world.outsider), version=draft, days=30)
    for days in (0, 91, "many"):
        with pytest.raises(ServiceError) as caught:
            replay.policy_replay_request(actor=Actor(user=world.governance), version=draft, days=days)
        assert caught.value.field == "days"
    active = PolicyVersion.objects.get(policy=world.churn_policy, state="active")
    with pytest.raises(ServiceError, match="draft or a version in review"):
        replay.policy_replay_request(actor=Actor(user=world.governance), version=active, days=30)
    assert not PolicyReplay.objects.exists()


def test_a_second_request_while_one_runs_returns_it(world, draft):
    first = replay.policy_replay_request(actor=Actor(user=world.governance), version=draft, days=30)
    assert replay.policy_replay_request(actor=Actor(user=world.governance), version=draft, days=30) == first
    assert PolicyReplay.objects.count() == 1


def test_the_fragment_starts_a_replay_and_shows_the_report(
    client, world, outputs, draft, django_capture_on_commit_callbacks
):
    client.force_login(world.governance)
    url = reverse("policies:policy-version-replay", kwargs={"pk": world.churn_policy.pk, "version_pk": draft.pk})
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Not replayed yet" in response.content.decode()
    assert "HX-Request" in response["Vary"]
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(url, {"days": "30"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and 'hx-trigger="every 2s"' in response.content.decode()  # sent, polling
    page = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "every 2s" not in page and "Outputs that flip" in page and "Current" in page and "Very long reply" in page
    response = client.post(url, {"days": "500"}, HTTP_HX_REQUEST="true")
    assert "Ensure this value is less than or equal to 90" in response.content.decode()
    assert PolicyReplay.objects.count() == 1
    # Without htmx the page is the policy's, where the fragment is included.
    assert client.get(url).status_code == 302


def test_the_fragment_polls_while_the_replay_runs(client, world, draft):
    PolicyReplay.objects.create(
        version=draft, rules_hash="x", requested_by=world.governance, status="running", total=10, done=4
    )
    client.force_login(world.governance)
    url = reverse("policies:policy-version-replay", kwargs={"pk": world.churn_policy.pk, "version_pk": draft.pk})
    page = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert 'hx-trigger="every 2s"' in page and "4 of 10 outputs" in page and 'value="4" max="10"' in page


def test_a_reader_who_may_not_replay_sees_no_button(client, world, draft):
    client.force_login(world.executive)
    url = reverse("policies:policy-version-replay", kwargs={"pk": world.churn_policy.pk, "version_pk": draft.pk})
    response = client.get(url, HTTP_HX_REQUEST="true")
    assert response.status_code == 200 and "Replay</button>" not in response.content.decode()
    response = client.post(url, {"days": "30"})
    assert response.status_code == 403 and not PolicyReplay.objects.exists()
