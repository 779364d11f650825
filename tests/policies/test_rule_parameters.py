"""The parameters of a rule's effect: how many reviewers and which queue a review needs, which fields and
patterns a redaction removes; parameters that contradict the effect are refused with the field named."""

import pytest

from apps.core.actors import Actor
from apps.core.exceptions import ServiceError
from apps.policies import evaluation
from apps.policies.evaluation import RuleSpec
from apps.policies.models import PolicyVersion, Rule
from apps.policies.services import policy_version_create
from apps.reviews.models import ReviewQueue
from apps.workflows.services import Draft, recommendation_submit

INPUTS = {"context": {}, "action": {}, "use_case": {}, "subject": "S-1", "confidence": 0.9, "freshness": "fresh"}


def _evaluate(rules, output):
    return evaluation.evaluate(None, rules=tuple(rules), output=output, cost=0.0, **INPUTS)


def test_a_redact_rule_blanks_its_fields_and_masks_its_patterns_besides_pii():
    rule = RuleSpec(
        1,
        "Internal notes",
        Rule.Effect.REDACT,
        "true",
        redact_fields=("notes",),
        redact_patterns=(r"ACME-\d{4}",),
    )
    verdict = _evaluate(
        [rule], {"text": "Quote ACME-1234 to ana@globex.example today.", "notes": "churn risk", "score": 3}
    )
    assert verdict.effect == "redact" and verdict.redactions == 3
    assert verdict.output == {
        "text": "Quote [redacted] to [email redacted] today.",
        "notes": "[redacted]",
        "score": 3,
    }


def test_a_redact_rule_that_does_not_fire_redacts_nothing():
    rule = RuleSpec(1, "Never", Rule.Effect.REDACT, "false", redact_fields=("notes",), redact_patterns=("Quote",))
    output = {"text": "Quote ACME-1234 to ana@globex.example.", "notes": "x"}
    assert _evaluate([rule], output).output == output


def test_review_rules_ask_for_the_most_reviewers_and_the_first_named_queue():
    rules = [
        RuleSpec(1, "Low confidence", Rule.Effect.REVIEW, "signals.confidence < 0.95", reviewers=2),
        RuleSpec(2, "Big discount", Rule.Effect.REVIEW, "true", reviewers=3, review_queue_id=7),
        RuleSpec(3, "Not firing", Rule.Effect.REVIEW, "false", reviewers=5, review_queue_id=8),
    ]
    verdict = _evaluate(rules, {"text": "x"})
    assert (verdict.effect, verdict.reviewers, verdict.review_queue_id) == ("review", 3, 7)


def test_routing_uses_the_rules_queue_and_reviewers(world):
    escalations = ReviewQueue.objects.create(name="Pricing desk")
    active = PolicyVersion.objects.get(policy=world.churn_policy, state="active")
    Rule.objects.filter(version=active, effect=Rule.Effect.REVIEW).update(reviewers=2, review_queue=escalations)
    draft = Draft(subject_key="ACC-1", content={"text": "Offer 30%."}, confidence=0.1, proposed_action={})
    (recommendation,) = recommendation_submit(actor=Actor(user=world.integrator), use_case=world.churn, drafts=[draft])
    task = recommendation.review_task
    assert (task.queue, task.required_reviews) == (escalations, 2)
    assert recommendation.events.get(type="queued").payload["reviewers"] == 2


@pytest.mark.parametrize(
    ("rule", "field", "says"),
    [
        ({"effect": "block", "reviewers": 2}, "rules[0].reviewers", "only apply to a rule that requires review"),
        ({"effect": "review", "reviewers": 9}, "rules[0].reviewers", "from 1 to 5"),
        ({"effect": "review", "redact_fields": ["notes"]}, "rules[0].redact_fields", "only apply to a redact rule"),
        ({"effect": "redact", "redact_patterns": ["(unclosed"]}, "rules[0].redact_patterns", "not valid"),
        ({"effect": "redact", "redact_fields": ["bad name"]}, "rules[0].redact_fields", "output field names"),
        ({"effect": "review", "review_queue": 999999}, "rules[0].review_queue", "no such review queue"),
    ],
)
def test_contradictory_or_bad_parameters_are_refused_and_nothing_is_saved(world, rule, field, says):
    before = PolicyVersion.objects.count()
    with pytest.raises(ServiceError) as error:
        policy_version_create(
            actor=Actor(user=world.governance),
            policy=world.churn_policy,
            rules=[{"name": "R", "condition": "true", **rule}],
        )
    assert error.value.field == field and says in error.value.message
    assert PolicyVersion.objects.count() == before


def test_the_editor_saves_the_parameters(client, world):
    client.force_login(world.governance)
    data = {
        "rules-TOTAL_FORMS": "1",
        "rules-INITIAL_FORMS": "0",
        "rules-0-name": "Mask codes",
        "rules-0-condition": "true",
        "rules-0-effect": "redact",
        "rules-0-redact_fields": "notes, internal_id",
        "rules-0-redact_patterns": "ACME-\\d{4}\nSECRET",
        "rules-0-ORDER": "1",
        "note": "Masking",
    }
    response = client.post(f"/policies/{world.churn_policy.pk}/versions/new/", data)
    assert response.status_code == 302, response.content.decode()[:2000]
    rule = Rule.objects.filter(version__policy=world.churn_policy).latest("pk")
    assert (rule.redact_fields, rule.redact_patterns) == (["notes", "internal_id"], ["ACME-\\d{4}", "SECRET"])


def test_the_editor_names_a_contradiction_under_its_field(client, world):
    client.force_login(world.governance)
    data = {
        "rules-TOTAL_FORMS": "1",
        "rules-INITIAL_FORMS": "0",
        "rules-0-name": "Block",
        "rules-0-condition": "true",
        "rules-0-effect": "block",
        "rules-0-reviewers": "3",
        "rules-0-ORDER": "1",
    }
    before = PolicyVersion.objects.count()
    body = client.post(f"/policies/{world.churn_policy.pk}/versions/new/", data).content.decode()
    assert "Reviewers: reviewers and a queue only apply to a rule that requires review." in body
    assert PolicyVersion.objects.count() == before


def test_a_business_hours_queue_gives_the_task_a_business_hours_due_time(world):
    import datetime as dt

    from apps.core import clock

    queue = world.churn.review_queue
    queue.business_hours, queue.sla = True, dt.timedelta(hours=4)
    queue.save()
    draft = Draft(subject_key="ACC-2", content={"text": "Offer 30%."}, confidence=0.1, proposed_action={})
    friday_afternoon = dt.datetime(2026, 11, 27, 16, 30, tzinfo=dt.UTC)  # 30 minutes left in the day
    with clock.simulated(friday_afternoon):
        (recommendation,) = recommendation_submit(
            actor=Actor(user=world.integrator), use_case=world.churn, drafts=[draft]
        )
    assert recommendation.review_task.due_at == dt.datetime(2026, 11, 30, 12, 30, tzinfo=dt.UTC)  # Monday
