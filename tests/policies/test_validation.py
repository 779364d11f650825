"""Bad CEL, unknown variables and signals, contradictory rule lists: clear errors with the position, nothing saved."""

import cel
import pytest
from django.urls import reverse

from apps.core.actors import Actor
from apps.core.exceptions import ServiceError
from apps.policies import evaluation
from apps.policies.evaluation import ConditionError, compile_condition
from apps.policies.models import PolicyVersion, Rule
from apps.policies.services import policy_version_create

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.mark.parametrize(
    ("condition", "line", "column", "says"),
    [
        ("signals.confidence <", 1, 21, "Syntax error"),
        ("output.text == 'x' &&\n  (signals.cost > 1", 2, 20, "missing ')'"),
        ("outptu.text == ''", 1, 1, "Unknown variable(s): outptu"),
        ("output.text == '' ||\n  signals.confidense < 0.2", 2, 3, "Unknown signal 'confidense'"),
        ('signals["pii_cont"] > 0', 1, 1, "Unknown signal 'pii_cont'"),
    ],
)
def test_condition_errors_name_the_position(condition, line, column, says):
    with pytest.raises(ConditionError) as error:
        compile_condition(condition)
    assert (error.value.line, error.value.column) == (line, column)
    assert says in str(error.value) and str(error.value).startswith(f"line {line}, column {column}: ")


@pytest.mark.parametrize(
    "condition",
    [
        'signals.pii_count > 0 && "signals.nothing" != output.text',  # a quoted name is not a reference
        'signals["confidence"] < 0.5 && signals.freshness == "stale" && "email" in signals.pii_kinds',
        "signals.cost > 1.0 || signals.quality == 'failing'",
    ],
)
def test_known_signals_compile(condition):
    assert compile_condition(condition) is not None


def test_every_fault_is_refused_and_nothing_is_saved(world):
    before = (PolicyVersion.objects.count(), Rule.objects.count())
    good = {"name": "Low confidence", "condition": "signals.confidence < 0.5", "effect": "review"}
    for rules, field in (
        ([good, {**good, "name": "low confidence"}], "rules[1].name"),
        ([good, {"name": "Bad", "condition": "signals.confidence <", "effect": "review"}], "rules[1].condition"),
        ([good, {"name": "Odd", "condition": "true", "effect": "maybe"}], "rules[1].effect"),
        ([], "rules"),
    ):
        with pytest.raises(ServiceError) as error:
            policy_version_create(actor=Actor(user=world.governance), policy=world.churn_policy, rules=rules)
        assert error.value.field == field, error.value.message
    assert (PolicyVersion.objects.count(), Rule.objects.count()) == before


class TestEditor:
    def _data(self, rules, **extra):
        data = {"rules-TOTAL_FORMS": str(len(rules)), "rules-INITIAL_FORMS": "0", "note": "Tighter", **extra}
        for index, rule in enumerate(rules):
            for key, value in rule.items():
                data[f"rules-{index}-{key}"] = value
            data.setdefault(f"rules-{index}-ORDER", str(index + 1))
        return data

    def test_the_editor_starts_from_the_newest_version(self, client, world):
        client.force_login(world.governance)
        response = client.get(reverse("policies:policy-version-new", args=[world.replies_policy.pk]))
        assert response.status_code == 200
        assert "signals.confidence &lt; 0.25" in response.content.decode()  # pending v2's rule

    def test_htmx_check_shows_the_error_under_the_rule_and_saves_nothing(self, client, world):
        client.force_login(world.governance)
        count = PolicyVersion.objects.count()
        data = self._data(
            [
                {"name": "Ok", "condition": "signals.confidence < 0.5", "effect": "review"},
                {"name": "Broken", "condition": "signals.confidence <", "effect": "block"},
            ],
            validate="1",
        )
        response = client.post(reverse("policies:policy-version-new", args=[world.churn_policy.pk]), data, **HTMX)
        assert response.status_code == 200
        body = response.content.decode()
        assert "<html" not in body and 'id="version-editor"' in body
        assert 'id="rules-1-condition-error">Condition: line 1, column 21: Syntax error' in body
        assert "rules-0-condition-error" not in body
        assert PolicyVersion.objects.count() == count

    def test_saving_with_one_bad_rule_saves_nothing(self, client, world):
        client.force_login(world.governance)
        count = PolicyVersion.objects.count()
        data = self._data(
            [
                {"name": "Ok", "condition": "signals.confidence < 0.5", "effect": "review"},
                {"name": "Typo", "condition": "signals.confidnce < 0.5", "effect": "block"},
            ]
        )
        response = client.post(reverse("policies:policy-version-new", args=[world.churn_policy.pk]), data)
        assert response.status_code == 200
        assert "Unknown signal &#x27;confidnce&#x27;" in response.content.decode()
        assert PolicyVersion.objects.count() == count

    def test_saving_creates_the_draft_with_its_rules_in_order(self, client, world):
        client.force_login(world.governance)
        data = self._data(
            [
                {"name": "Second", "condition": "signals.cost > 2.0", "effect": "review", "ORDER": "2"},
                {"name": "First", "condition": "signals.pii_count > 0", "effect": "redact", "ORDER": "1"},
                {"name": "Dropped", "condition": "true", "effect": "block", "DELETE": "on"},
            ]
        )
        response = client.post(reverse("policies:policy-version-new", args=[world.churn_policy.pk]), data)
        version = PolicyVersion.objects.get(policy=world.churn_policy, number=2)
        assert response.status_code == 302
        assert response["Location"] == reverse(
            "policies:policy-version-detail", args=[world.churn_policy.pk, version.pk]
        )
        assert list(version.rules.values_list("name", "order")) == [("First", 0), ("Second", 1)]
        assert version.author == world.governance and version.state == "draft" and version.note == "Tighter"

    def test_a_viewer_may_not_open_the_editor(self, client, world, outsider):
        client.force_login(world.executive)
        url = reverse("policies:policy-version-new", args=[world.churn_policy.pk])
        assert client.get(url).status_code == 403
        assert client.post(url, self._data([{"name": "x", "condition": "true", "effect": "block"}])).status_code == 403
        client.force_login(outsider)
        assert client.get(url).status_code == 404
        assert PolicyVersion.objects.filter(policy=world.churn_policy).count() == 1


@pytest.mark.parametrize(
    ("condition", "text", "expected"),
    [
        ('output.text.matches("(?i)\\\\brefund")', "We will REFUND the charge", True),
        ('output.text.matches("(?i)\\\\brefund")', "No prefunding here", False),
        ('output.text.matches("^[0-9]{3}-")', "415-555", True),
        ('output.text.matches("gdpr|erasure") && "matches(" != output.text', "please, erasure", True),
        ("output.text.matches('x$')", "box", True),
    ],
)
def test_matches_runs_with_a_cached_pattern_and_agrees_with_cel(condition, text, expected):
    """matches() calls are served by a cached compiled pattern (a quoted "matches(" is left alone); the result
    is the one CEL's own matches() gives on the original condition."""
    assert ".rematch(" in compile_condition(condition).source
    ours = evaluation.evaluate(
        None,
        rules=(evaluation.RuleSpec(1, "r", Rule.Effect.BLOCK, condition),),
        output={"text": text},
        context={},
        action={},
        use_case={},
        subject="S-1",
        confidence=1.0,
        freshness="fresh",
        cost=0.0,
    )
    assert cel.evaluate(condition, {"output": {"text": text}}) is expected
    assert (ours.effect == Rule.Effect.BLOCK) is expected and not any("error" in f for f in ours.fired)


def test_a_bad_matches_pattern_is_refused_at_its_position():
    with pytest.raises(ConditionError) as error:
        compile_condition('signals.cost > 1.0 ||\n  output.text.matches("(refund")')
    assert (error.value.line, error.value.column) == (2, 23) and "Invalid pattern" in str(error.value)


def test_matches_on_a_non_string_fails_safe_to_review():
    verdict = evaluation.evaluate(
        None,
        rules=(evaluation.RuleSpec(1, "Number as text", Rule.Effect.ALLOW, 'output.score.matches("1")'),),
        output={"text": "x", "score": 1},
        context={},
        action={},
        use_case={},
        subject="S-1",
        confidence=1.0,
        freshness="fresh",
        cost=0.0,
    )
    assert verdict.effect == Rule.Effect.REVIEW and "error" in verdict.fired[0]
