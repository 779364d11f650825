from django import forms

from apps.connectors.models import Connector
from apps.core.permissions import restrict
from apps.workflows.models import UseCase

from .models import AlertRule
from .services import RULE_FIELDS


class AlertRuleForm(forms.ModelForm):
    """An alert rule; its choices are what the user may change (use cases, endpoints) or see (webhooks)."""

    reason = forms.CharField(max_length=100, help_text="Kept in the rule's history with your name.")

    class Meta:
        model = AlertRule
        fields = RULE_FIELDS

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["use_case"].queryset = restrict(UseCase.objects.all(), user, "change_usecase")
        self.fields["connector"].queryset = restrict(
            Connector.objects.filter(kind__in=Connector.MODEL_KINDS), user, "change_connector"
        )
        self.fields["connector"].label = "Model endpoint"
        self.fields["notify_webhook"].queryset = restrict(
            Connector.objects.filter(kind=Connector.Kind.WEBHOOK), user, "view_connector"
        )
        for field in self.fields.values():
            css = "form-check-input" if isinstance(field, forms.BooleanField) else "form-control form-control-sm"
            if isinstance(field, forms.ChoiceField):
                css = "form-select form-select-sm"
            field.widget.attrs.setdefault("class", css)


class CostImportForm(forms.Form):
    file = forms.FileField(label="Provider usage export (CSV)")
    threshold_percent = forms.DecimalField(
        label="Flag differences over (%)", min_value=0, max_value=1000, decimal_places=2, initial=10
    )
