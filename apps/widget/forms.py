from django import forms

from apps.workflows.models import RecommendationEvent

from .services import DEFAULT_TTL, MAX_EDIT_CHARS, MAX_ORIGINS

Type = RecommendationEvent.Type


class WidgetFeedbackForm(forms.Form):
    """One button of the widget (its template writes the inputs). `form_token` names the output the
    form was rendered for."""

    ACTIONS = {
        "shown": Type.SHOWN,
        "accept": Type.ACCEPTED,
        "edit": Type.FEEDBACK_EDITED,
        "reject": Type.FEEDBACK_REJECTED,
    }

    form_token = forms.CharField(max_length=500)
    action = forms.ChoiceField(choices=[(name, name) for name in ACTIONS])
    text = forms.CharField(required=False, max_length=MAX_EDIT_CHARS)
    reason = forms.CharField(required=False, max_length=500)

    @property
    def event_type(self) -> str:
        return self.ACTIONS[self.cleaned_data["action"]]


class WidgetLinkForm(forms.Form):
    subject = forms.CharField(
        max_length=120, help_text="The key of the record the host page is about, e.g. an account id"
    )
    ttl_minutes = forms.TypedChoiceField(
        label="Valid for",
        coerce=int,
        choices=[(15, "15 minutes"), (30, "30 minutes"), (60, "60 minutes")],
        initial=int(DEFAULT_TTL.total_seconds() // 60),
    )


class EmbedOriginsForm(forms.Form):
    embed_origins = forms.CharField(
        label="Web apps that may show the widget",
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text=f"One origin per line (scheme://host[:port]), at most {MAX_ORIGINS}; empty: none may.",
    )

    def clean_embed_origins(self) -> list[str]:
        return [line.strip() for line in self.cleaned_data["embed_origins"].splitlines() if line.strip()]
