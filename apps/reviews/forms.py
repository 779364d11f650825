from django import forms

from .models import ReviewVerdict

SKIP = "skip"


class ReviewDecisionForm(forms.Form):
    """One decision on one review task. The rules (a reason to reject, a text to edit) are checked
    here for a friendly field error and again by services.review_task_decide, which is the authority."""

    decision = forms.ChoiceField(choices=[*ReviewVerdict.Decision.choices, (SKIP, "Skip")])
    edited_text = forms.CharField(
        label="Edited text",
        required=False,
        strip=False,
        max_length=20_000,
        widget=forms.Textarea(attrs={"rows": 6, "class": "form-control", "data-review-edit": ""}),
    )
    reason_code = forms.ChoiceField(
        label="Reason to reject",
        required=False,
        choices=[("", "Choose a reason…"), *ReviewVerdict.Reason.choices],
        widget=forms.Select(attrs={"class": "form-select", "data-review-reason": ""}),
    )
    comment = forms.CharField(
        label="Comment (optional)",
        required=False,
        max_length=2000,
        # A textarea, not an input: Enter in a text input would submit the form with its first button (Approve).
        widget=forms.Textarea(attrs={"rows": 2, "class": "form-control"}),
    )
    opened_at = forms.FloatField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, original_text: str = "", **kwargs):
        super().__init__(*args, **kwargs)
        self.original_text = original_text

    def clean(self):
        data = super().clean()
        decision = data.get("decision")
        if decision == ReviewVerdict.Decision.REJECT and not data.get("reason_code"):
            self.add_error("reason_code", "Choose a reason to reject.")
        if decision == ReviewVerdict.Decision.EDIT:
            edited = data.get("edited_text") or ""
            if not edited.strip():
                self.add_error("edited_text", "The edited text is required.")
            elif edited.strip() == self.original_text.strip():
                self.add_error("edited_text", "The text is unchanged: use Approve, or change the text.")
        return data
