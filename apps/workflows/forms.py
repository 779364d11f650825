from decimal import Decimal

from django import forms
from django.contrib.auth import get_user_model

from apps.connectors.models import Connector, Destination, SourceDataset
from apps.core.permissions import restrict
from apps.policies.models import Policy
from apps.reviews.models import ReviewQueue

from .models import UseCase
from .services import REASON_MAX_CHARS, SETTINGS_FIELDS

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


class UseCaseSettingsForm(forms.ModelForm):
    """What a use case reads, calls, applies and delivers to, and its ROI baseline; the choices are the
    connectors the user may use and the policies they can see (the service checks again)."""

    destinations = forms.ModelMultipleChoiceField(queryset=Destination.objects.none(), required=False)
    reason = forms.CharField(
        max_length=REASON_MAX_CHARS,
        error_messages=REASON_REQUIRED,
        help_text="Required; kept in the use case's history with your name.",
    )

    class Meta:
        model = UseCase
        fields = [*SETTINGS_FIELDS, "destinations"]
        widgets = {"purpose": forms.Textarea(attrs={"rows": 2}), "risk_reason": forms.Textarea(attrs={"rows": 2})}

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        usable = restrict(Connector.objects.all(), user, "use_connector")
        models = usable.filter(kind__in=Connector.MODEL_KINDS).order_by("name")
        self.fields["model_endpoint"].queryset = models
        self.fields["fallback_endpoint"].queryset = models
        self.fields["source_dataset"].queryset = SourceDataset.objects.filter(connector__in=usable).select_related(
            "connector"
        )
        self.fields["destinations"].queryset = Destination.objects.filter(connector__in=usable).select_related(
            "connector"
        )
        self.fields["policy"].queryset = restrict(Policy.objects.all(), user, "view_policy").order_by("name")
        queues = restrict(ReviewQueue.objects.all(), user, "view_reviewqueue")
        self.fields["review_queue"].queryset = queues.order_by("name")
        self.fields["owner"].queryset = get_user_model().objects.filter(is_active=True).order_by("username")
        # A choice already made stays selectable, so saving other fields never drops it silently.
        for field in ("model_endpoint", "fallback_endpoint", "source_dataset", "policy", "review_queue"):
            current = getattr(self.instance, f"{field}_id", None)
            if current:
                model = self.fields[field].queryset.model
                self.fields[field].queryset = self.fields[field].queryset | model.objects.filter(pk=current)
        if self.instance.pk:
            self.fields["destinations"].queryset = (
                self.fields["destinations"].queryset | self.instance.destinations.all()
            ).distinct()


class UseCaseProposeForm(forms.Form):
    name = forms.CharField(max_length=120)
    business_unit = forms.ChoiceField(help_text="A unit whose use cases you govern.")
    purpose = forms.CharField(widget=forms.Textarea(attrs={"rows": 3}), required=False, max_length=4000)
    risk_tier = forms.ChoiceField(choices=UseCase.RiskTier.choices, initial=UseCase.RiskTier.LIMITED)
    risk_reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 2}),
        required=False,
        max_length=4000,
        help_text="Required for high and prohibited: which EU AI Act category, and why.",
    )

    def __init__(self, *args, business_units: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["business_unit"].choices = [(unit, unit) for unit in business_units]
