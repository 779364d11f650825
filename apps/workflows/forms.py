from decimal import Decimal

from django import forms

from .models import UseCase
from .services import REASON_MAX_CHARS

REASON_REQUIRED = {"required": "Say why: a reason is required."}


class UseCaseTransitionForm(forms.Form):
    """Move a use case to one of the statuses its lifecycle allows from where it is."""

    to = forms.ChoiceField(choices=UseCase.Status.choices, label="New status")
    reason = forms.CharField(
        max_length=REASON_MAX_CHARS,
        error_messages=REASON_REQUIRED,
        widget=forms.TextInput(attrs={"placeholder": "Why, for the history"}),
        help_text="Required; kept in the use case's history with your name.",
    )


class SampleRateForm(forms.Form):
    """The share of allowed outputs a person still reviews, as a percentage; empty means the tier's default."""

    percent = forms.DecimalField(
        label="Review sample (%)",
        required=False,
        min_value=Decimal("0"),
        max_value=Decimal("100"),
        decimal_places=1,
        help_text="Empty: the risk tier's default.",
    )
    reason = forms.CharField(max_length=REASON_MAX_CHARS, label="Reason", error_messages=REASON_REQUIRED)

    @property
    def rate(self) -> Decimal | None:
        percent = self.cleaned_data.get("percent")
        return None if percent is None else (percent / 100).quantize(Decimal("0.001"))
