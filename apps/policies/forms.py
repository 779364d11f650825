import json

from django import forms
from django.contrib.auth.models import Group

from apps.reviews.models import ReviewQueue

from .evaluation import ConditionError, compile_condition
from .models import Approval, PolicyVersion, Rule
from .services import EMERGENCY_MAX_HOURS, MAX_REVIEWERS, rule_parameter_errors

RULE_TEST_EXAMPLE = json.dumps(
    {
        "output": {"text": "Offer a 20% renewal discount."},
        "context": {},
        "action": {"discount_pct": 20},
        "confidence": 0.5,
    },
    indent=2,
)
RULE_TEST_KEYS = {"output", "context", "action", "confidence", "use_case", "subject", "freshness", "cost"}


class VersionReviewForm(forms.Form):
    decision = forms.ChoiceField(choices=Approval.Decision.choices, widget=forms.RadioSelect)
    comment = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), help_text="Required: say what you checked or what must change."
    )

    def clean_comment(self):
        comment = self.cleaned_data["comment"].strip()
        if not comment:
            raise forms.ValidationError("A comment is required.")
        return comment


class RuleTestForm(forms.Form):
    """A sample output, context and action, evaluated by one version of the policy."""

    version = forms.ModelChoiceField(queryset=PolicyVersion.objects.none(), empty_label=None)
    sample = forms.CharField(
        label="Sample (JSON)",
        widget=forms.Textarea(attrs={"rows": 8, "class": "font-monospace", "spellcheck": "false"}),
        help_text='An object with "output", "context", "action" (objects) and "confidence" (a number).',
    )

    def __init__(self, *args, policy, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["version"].queryset = PolicyVersion.objects.filter(policy=policy).order_by("-number")
        self.fields["version"].label_from_instance = lambda v: f"v{v.number} ({v.get_state_display()})"

    def clean_sample(self):
        try:
            data = json.loads(self.cleaned_data["sample"])
        except json.JSONDecodeError as exc:
            raise forms.ValidationError(f"Not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}.") from exc
        if not isinstance(data, dict):
            raise forms.ValidationError("The sample must be a JSON object.")
        unknown = set(data) - RULE_TEST_KEYS
        if unknown:
            raise forms.ValidationError(f"Unknown key(s): {', '.join(sorted(unknown))}.")
        for key in ("output", "context", "action", "use_case"):
            if not isinstance(data.get(key, {}), dict):
                raise forms.ValidationError(f'"{key}" must be an object.')
        confidence = data.get("confidence")
        if confidence is not None and (isinstance(confidence, bool) or not isinstance(confidence, int | float)):
            raise forms.ValidationError('"confidence" must be a number.')
        cost = data.get("cost", 0)
        if isinstance(cost, bool) or not isinstance(cost, int | float):
            raise forms.ValidationError('"cost" must be a number.')
        return data


class RuleForm(forms.Form):
    """One rule of a version being written; the condition is compiled as it is typed (htmx)."""

    name = forms.CharField(max_length=120)
    condition = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2, "class": "font-monospace", "spellcheck": "false"}),
        help_text="CEL over output, context, action, use_case, subject and signals.",
    )
    effect = forms.ChoiceField(choices=Rule.Effect.choices)
    description = forms.CharField(max_length=2000, required=False)
    reviewers = forms.IntegerField(
        min_value=1,
        max_value=MAX_REVIEWERS,
        initial=1,
        required=False,
        help_text="Review: independent verdicts needed (empty: 1).",
    )
    review_queue = forms.ModelChoiceField(
        queryset=ReviewQueue.objects.none(),
        required=False,
        empty_label="The use case's queue",
        help_text="Review: the queue the item goes to.",
    )
    redact_fields = forms.CharField(
        required=False, max_length=1000, help_text="Redact: output fields to blank, separated by commas."
    )
    redact_patterns = forms.CharField(
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 1, "class": "font-monospace", "spellcheck": "false"}),
        help_text="Redact: regular expressions to mask in the text, one per line (PII is always masked).",
    )

    def __init__(self, *args, policy=None, **kwargs):
        super().__init__(*args, **kwargs)
        if policy is not None:  # the queues of the policy's use cases
            self.fields["review_queue"].queryset = ReviewQueue.objects.filter(use_cases__policy=policy).distinct()

    def clean_condition(self):
        condition = self.cleaned_data["condition"]
        try:
            compile_condition(condition)
        except ConditionError as exc:
            raise forms.ValidationError(str(exc)) from exc
        return condition

    def clean_reviewers(self):
        return self.cleaned_data["reviewers"] or 1

    def clean_redact_fields(self):
        return [name.strip() for name in self.cleaned_data["redact_fields"].split(",") if name.strip()]

    def clean_redact_patterns(self):
        return [line.strip() for line in self.cleaned_data["redact_patterns"].splitlines() if line.strip()]

    def clean(self):
        data = super().clean()
        if {"effect", "reviewers", "redact_fields", "redact_patterns"} <= set(data):
            for key, message in rule_parameter_errors(data, "This rule", "rule").items():
                self.add_error(key.removeprefix("rule."), message.removeprefix("This rule: "))
        return data


RULE_KEYS = (
    "name",
    "condition",
    "effect",
    "description",
    "reviewers",
    "review_queue",
    "redact_fields",
    "redact_patterns",
)


class BaseRuleFormSet(forms.BaseFormSet):
    def clean(self):
        # Without its management form the formset is invalid and has no ordered_forms (a 500 otherwise).
        if any(self.errors) or not self.management_form.is_valid():
            return
        names = set()
        for form in self.rule_forms():
            name = form.cleaned_data["name"].strip().lower()
            if name in names:
                form.add_error("name", "Another rule already has this name.")
            names.add(name)
        if not self.rule_forms():
            raise forms.ValidationError("A version needs at least one rule.")

    def rule_forms(self) -> list[forms.Form]:
        """The filled-in rows in evaluation order (ORDER), without deleted and untouched blank rows."""
        return [form for form in self.ordered_forms if form.cleaned_data and not self._should_delete_form(form)]

    def rules(self) -> list[dict]:
        return [{key: form.cleaned_data[key] for key in RULE_KEYS} for form in self.rule_forms()]


RuleFormSet = forms.formset_factory(
    RuleForm, formset=BaseRuleFormSet, extra=1, can_order=True, can_delete=True, max_num=100, validate_max=True
)


class VersionNoteForm(forms.Form):
    note = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}), required=False, max_length=2000, help_text="What changes and why."
    )


class RequirementForm(forms.Form):
    group = forms.ModelChoiceField(queryset=Group.objects.order_by("name"))
    count = forms.IntegerField(min_value=1, max_value=50, initial=1)


RequirementFormSet = forms.formset_factory(RequirementForm, extra=1, can_delete=True, max_num=20, validate_max=True)


class ScheduleForm(forms.Form):
    effective_from = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="UTC. Empty clears the date.",
    )


class EmergencyForm(forms.Form):
    reason = forms.CharField(widget=forms.Textarea(attrs={"rows": 2}), max_length=2000)
    hours = forms.IntegerField(min_value=1, max_value=EMERGENCY_MAX_HOURS, initial=4)
