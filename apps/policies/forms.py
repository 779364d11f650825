import json

from django import forms

from .models import Approval, PolicyVersion

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
