import datetime

from django import forms
from django.utils import timezone

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
        label="Comment (required to escalate)",
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
        if decision == ReviewVerdict.Decision.ESCALATE and not (data.get("comment") or "").strip():
            self.add_error("comment", "Say why the item needs a lead.")
        return data


class TaskIdsField(forms.TypedMultipleChoiceField):
    """Ids of review tasks. Any integer passes here: the service refuses those not in the queue, one by one."""

    def __init__(self, **kwargs):
        super().__init__(coerce=int, **kwargs)

    def valid_value(self, value):
        return True


class BulkDecisionForm(forms.Form):
    """Approve or reject the ticked items of a queue with one reason (services.review_tasks_bulk_decide)."""

    tasks = TaskIdsField(error_messages={"required": "Tick at least one item."})
    decision = forms.ChoiceField(
        choices=[(ReviewVerdict.Decision.APPROVE, "Approve"), (ReviewVerdict.Decision.REJECT, "Reject")]
    )
    reason_code = forms.ChoiceField(
        label="Reason code (to reject)",
        required=False,
        choices=[("", "Choose a reason…"), *ReviewVerdict.Reason.choices],
        widget=forms.Select(attrs={"class": "form-select form-select-sm"}),
    )
    comment = forms.CharField(
        label="Reason",
        max_length=2000,
        error_messages={"required": "Give the reason for this bulk decision."},
        widget=forms.TextInput(attrs={"class": "form-control form-control-sm"}),
    )

    def clean(self):
        data = super().clean()
        if data.get("decision") == ReviewVerdict.Decision.REJECT and not data.get("reason_code"):
            self.add_error("reason_code", "Choose a reason code to reject.")
        return data


class DashboardFilterForm(forms.Form):
    """The dashboard's date range (both days included); empty fields mean the last DEFAULT_DAYS days."""

    DEFAULT_DAYS = 30
    MAX_DAYS = 366

    since = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date", "class": "form-control"})
    )
    until = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date", "class": "form-control"})
    )

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until:
            if until < since:
                self.add_error("until", "The end date is before the start date.")
            elif (until - since).days >= self.MAX_DAYS:
                self.add_error("until", f"Choose at most {self.MAX_DAYS} days.")
        return data

    def period(self, today: datetime.date) -> tuple[datetime.datetime, datetime.datetime]:
        """[start, end) in the current time zone: the chosen days, or the defaults when the form is invalid."""
        data = self.cleaned_data if self.is_valid() else {}
        until = data.get("until") or today
        since = data.get("since") or until - datetime.timedelta(days=self.DEFAULT_DAYS - 1)
        zone = timezone.get_current_timezone()
        start = datetime.datetime.combine(since, datetime.time.min, tzinfo=zone)
        end = datetime.datetime.combine(until + datetime.timedelta(days=1), datetime.time.min, tzinfo=zone)
        return start, end
