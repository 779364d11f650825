"""List mode of a review queue: the filters a reviewer narrows its items with, the sort orders, and keyset
pages per sort order (a cursor names the last row's sort values; nothing counts the tasks, PITFALLS #4)."""

import base64
import binascii
import json
import operator
from datetime import datetime, timedelta
from functools import reduce
from urllib.parse import urlencode

from django import forms
from django.db.models import Q, QuerySet

from apps.policies.models import Rule
from apps.workflows.models import UseCase

from .models import ReviewQueue, ReviewTask
from .selectors import reasons_name

# An item is "at risk" (due soon) once three quarters of its queue's SLA have gone by.
AT_RISK_SHARE = 0.75

# Each sort order is a list of (field, descending); the last field is the primary key, so the order is total
# and a keyset cursor neither repeats nor skips a row.
SORTS = {
    "priority": ("Priority", [("priority", True), ("created_at", False), ("pk", False)]),
    "oldest": ("Oldest first", [("created_at", False), ("pk", False)]),
    "newest": ("Newest first", [("created_at", True), ("pk", True)]),
    "due": ("Due soonest", [("due_at", False), ("pk", False)]),
}
DEFAULT_SORT = "priority"
AGES = {"15m": timedelta(minutes=15), "1h": timedelta(hours=1), "4h": timedelta(hours=4), "1d": timedelta(days=1)}
PENDING = "pending"
STATUSES = {
    PENDING: [ReviewTask.Status.OPEN, ReviewTask.Status.CLAIMED],
    ReviewTask.Status.ESCALATED: [ReviewTask.Status.ESCALATED],
    ReviewTask.Status.ADJUDICATION: [ReviewTask.Status.ADJUDICATION],
}


class TaskFilterForm(forms.Form):
    """The list's filters, read from the query string (kept in the URL, so a filtered list can be shared)."""

    status = forms.ChoiceField(
        required=False,
        choices=[
            (PENDING, "Pending"),
            (ReviewTask.Status.ESCALATED, "Escalated"),
            (ReviewTask.Status.ADJUDICATION, "Needs adjudication"),
        ],
    )
    use_case = forms.ModelChoiceField(queryset=UseCase.objects.none(), required=False, empty_label="Any use case")
    rule = forms.CharField(required=False, max_length=120, label="Rule that fired")
    older_than = forms.ChoiceField(
        required=False,
        label="Older than",
        choices=[("", "Any age"), ("15m", "15 minutes"), ("1h", "1 hour"), ("4h", "4 hours"), ("1d", "1 day")],
    )
    sla = forms.ChoiceField(
        required=False,
        label="SLA",
        choices=[("", "Any SLA state"), ("ok", "On time"), ("at_risk", "Due soon"), ("breached", "Breached")],
    )
    assignee = forms.ChoiceField(
        required=False,
        label="Claimed by",
        choices=[("", "Any"), ("me", "Me"), ("anyone", "Anyone"), ("nobody", "Nobody")],
    )
    sample = forms.ChoiceField(
        required=False,
        label="Sample",
        choices=[("", "All items"), ("yes", "Samples only"), ("no", "Flagged items only")],
    )
    sort = forms.ChoiceField(
        required=False, choices=[(key, label) for key, (label, _) in SORTS.items()], label="Sort by"
    )
    after = forms.CharField(required=False, widget=forms.HiddenInput)

    def __init__(self, *args, queue: ReviewQueue, **kwargs):
        super().__init__(*args, **kwargs)
        # The use cases whose items this queue receives: its own, and those whose rules route here.
        self.fields["use_case"].queryset = (
            UseCase.objects.filter(Q(review_queue=queue) | Q(policy__versions__rules__review_queue=queue))
            .distinct()
            .order_by("name")
        )
        self.queue = queue
        for field in self.fields.values():
            css = (
                "form-select form-select-sm"
                if isinstance(field.widget, forms.Select)
                else "form-control form-control-sm"
            )
            field.widget.attrs.setdefault("class", css)

    def rule_names(self) -> list[str]:
        """Suggestions for the rule field: rules of the policies of the queue's use cases."""
        return list(
            Rule.objects.filter(Q(version__policy__use_cases__review_queue=self.queue) | Q(review_queue=self.queue))
            .order_by("name")
            .values_list("name", flat=True)
            .distinct()
        )

    def query(self, **extra) -> str:
        """The query string of the valid, non-empty filters (without the cursor), plus `extra`."""
        params = {
            name: (value.pk if isinstance(value, UseCase) else value)
            for name, value in self.cleaned_data.items()
            if value and name != "after"
        }
        return urlencode(params | {key: value for key, value in extra.items() if value})


def task_filter(tasks: QuerySet[ReviewTask], *, data: dict, user, sla: timedelta, now: datetime) -> QuerySet:
    """`tasks` narrowed by the cleaned filters `data` (pending items when no status is chosen)."""
    tasks = tasks.filter(status__in=STATUSES[data.get("status") or PENDING])
    if data.get("use_case"):
        tasks = tasks.filter(recommendation__use_case=data["use_case"])
    if data.get("rule"):
        tasks = tasks.filter(reasons_name(data["rule"]))
    if data.get("older_than"):
        tasks = tasks.filter(created_at__lt=now - AGES[data["older_than"]])
    at_risk_from = now + sla * (1 - AT_RISK_SHARE)
    match data.get("sla"):
        case "breached":
            tasks = tasks.filter(due_at__lt=now)
        case "at_risk":
            tasks = tasks.filter(due_at__gte=now, due_at__lte=at_risk_from)
        case "ok":
            tasks = tasks.filter(due_at__gt=at_risk_from)
    held = Q(claimed_by__isnull=False, lease_expires_at__gte=now)
    match data.get("assignee"):
        case "me":
            tasks = tasks.filter(held, claimed_by=user)
        case "anyone":
            tasks = tasks.filter(held)
        case "nobody":
            tasks = tasks.exclude(held)
    if data.get("sample"):
        tasks = tasks.filter(is_sample=data["sample"] == "yes")
    return tasks


def _values(task: ReviewTask, sort: str) -> list:
    return [getattr(task, field) for field, _ in SORTS[sort][1]]


def cursor_encode(task: ReviewTask, sort: str) -> str:
    values = [value.isoformat() if isinstance(value, datetime) else value for value in _values(task, sort)]
    raw = json.dumps([sort, *values])
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def cursor_decode(value: str, sort: str) -> list | None:
    """The sort values a cursor points after; None for a missing or malformed cursor, or one made for another
    sort order (the first page)."""
    if not value:
        return None
    try:
        cursor_sort, *values = json.loads(base64.urlsafe_b64decode(value + "=" * (-len(value) % 4)))
        fields = SORTS[sort][1]
        if cursor_sort != sort or len(values) != len(fields):
            return None
        return [
            datetime.fromisoformat(raw) if field.endswith("_at") else int(raw)
            for (field, _), raw in zip(fields, values, strict=True)
        ]
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        return None


def _after(sort: str, values: list) -> Q:
    """Keyset condition: the rows after `values` in the sort order (lexicographic over its fields)."""
    conditions, equal = [], {}
    for (field, descending), value in zip(SORTS[sort][1], values, strict=True):
        conditions.append(Q(**equal, **{f"{field}__{'lt' if descending else 'gt'}": value}))
        equal[field] = value
    return reduce(operator.or_, conditions)


def task_page(tasks: QuerySet[ReviewTask], *, sort: str, after: str, size: int) -> tuple[list[ReviewTask], str]:
    """One page of `tasks` in the sort order, after the cursor `after`, and the cursor of the next page ("" at
    the end). Reads one row more than the page to know whether another page follows."""
    position = cursor_decode(after, sort)
    if position is not None:
        tasks = tasks.filter(_after(sort, position))
    rows = list(tasks.order_by(*[f"-{field}" if desc else field for field, desc in SORTS[sort][1]])[: size + 1])
    return rows[:size], (cursor_encode(rows[size - 1], sort) if len(rows) > size else "")
