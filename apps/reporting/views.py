import csv
import datetime as dt
from urllib.parse import urlencode

from django import forms
from django.contrib.auth.decorators import login_required
from django.http import HttpResponse, HttpResponseBadRequest
from django.template import TemplateDoesNotExist
from django.template.loader import get_template
from django.utils import timezone
from django.views.decorators.http import require_GET

from apps.core import clock
from apps.core.formatting import csv_safe
from apps.core.htmx import render_page

from . import lift, selectors
from .selectors import money

LIFT_TEMPLATE = "reporting/_lift.html"
DEFAULT_DAYS = 90
MAX_DAYS = 731


class RoiFilterForm(forms.Form):
    """The ROI filters, all optional; the choices are the use cases the user may view.
    (Kept beside its only view: the reporting app has no other form.)"""

    start = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    end = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    business_unit = forms.ChoiceField(required=False, label="Business unit")
    use_case = forms.ChoiceField(required=False, label="Use case")

    def __init__(self, *args, use_cases, **kwargs):
        super().__init__(*args, **kwargs)
        units = sorted({use_case.business_unit for use_case in use_cases})
        self.fields["business_unit"].choices = [("", "All business units")] + [(unit, unit) for unit in units]
        self.fields["use_case"].choices = [("", "All use cases")] + [(u.slug, u.name) for u in use_cases]
        for field in self.fields.values():
            field.widget.attrs.setdefault(
                "class", "form-select" if isinstance(field, forms.ChoiceField) else "form-control"
            )

    def clean(self):
        data = super().clean()
        today = timezone.localdate(clock.now())
        end = data.get("end") or today
        start = data.get("start") or end - dt.timedelta(days=DEFAULT_DAYS - 1)
        if start > end:
            raise forms.ValidationError("The start date is after the end date.")
        if (end - start).days + 1 > MAX_DAYS:
            raise forms.ValidationError(f"Choose at most {MAX_DAYS} days.")
        data["start"], data["end"] = start, end
        return data


def _filters(request) -> tuple[RoiFilterForm, dict]:
    """The bound filter form and the filters to apply: the defaults when the form is invalid."""
    use_cases = selectors.roi_use_cases(user=request.user)
    form = RoiFilterForm(request.GET or None, use_cases=use_cases)
    today = timezone.localdate(clock.now())
    filters = {"start": today - dt.timedelta(days=DEFAULT_DAYS - 1), "end": today, "business_unit": "", "use_case": ""}
    if form.is_bound and form.is_valid():
        filters.update({name: form.cleaned_data[name] for name in filters})
    return form, filters


def _summary(request, filters: dict) -> dict:
    return selectors.roi_summary(
        user=request.user,
        start=filters["start"],
        end=filters["end"],
        use_case_slug=filters["use_case"] or None,
        business_unit=filters["business_unit"] or None,
    )


def _query(filters: dict) -> str:
    return urlencode(
        {name: value.isoformat() if isinstance(value, dt.date) else value for name, value in filters.items() if value}
    )


def _lift_template() -> str | None:
    """The treated-vs-holdout lift section, when the reporting app ships it (it comes with the holdout work)."""
    try:
        get_template(LIFT_TEMPLATE)
    except TemplateDoesNotExist:
        return None
    return LIFT_TEMPLATE


@require_GET
@login_required
def roi(request):
    """Executive home: headline figures, charts and tables of the use cases the user may view.
    An htmx request (filters changed) gets only the charts region."""
    form, filters = _filters(request)
    summary = _summary(request, filters)
    context = {
        "form": form,
        "filters": filters,
        "query": _query(filters),
        "summary": summary,
        "chart_data": summary["charts"],
        "charts": CHARTS,
        "lift_template": _lift_template(),
    }
    if context["lift_template"]:
        context["lift"] = lift.lift_summary(
            user=request.user,
            start=filters["start"],
            end=filters["end"],
            use_case_slug=filters["use_case"] or None,
            business_unit=filters["business_unit"] or None,
        )
    return render_page(request, "reporting/roi.html", context, fragment="charts")


# chart → the columns of its CSV, after day, use case and business unit.
CHARTS = {
    "all": ("Everything", None),
    "funnel": ("Adoption funnel", ("recommendations", "delivered", "shown", "accepted", "acted_on")),
    "rates": (
        "Acceptance and override rate",
        ("shown", "accepted", "acceptance_rate", "reviewed", "edited", "rejected", "override_rate"),
    ),
    "cycle": (
        "Cycle time vs baseline",
        ("cycle_count", "cycle_seconds_total", "avg_cycle_minutes", "baseline_minutes"),
    ),
    "cost": ("Cost per accepted", ("accepted", "model_cost", "review_seconds", "reviewer_cost", "cost_per_accepted")),
    "value": (
        "Net value",
        ("accepted", "hours_saved", "time_value", "outcome_value", "model_cost", "reviewer_cost", "net_value"),
    ),
    "reasons": ("Top rejection reasons", None),  # one row per reason, not per day: see _export_reasons
}
ALL_COLUMNS = (
    "recommendations",
    "blocked",
    "delivered",
    "shown",
    "accepted",
    "acted_on",
    "reviewed",
    "approved",
    "edited",
    "rejected",
    "acceptance_rate",
    "override_rate",
    "cycle_count",
    "cycle_seconds_total",
    "avg_cycle_minutes",
    "baseline_minutes",
    "review_seconds",
    "model_cost",
    "reviewer_cost",
    "cost_per_accepted",
    "hours_saved",
    "time_value",
    "outcome_value",
    "net_value",
)
MONEY_COLUMNS = {"model_cost", "reviewer_cost", "cost_per_accepted", "time_value", "outcome_value", "net_value"}


def _cell(name: str, value):
    if value is None:
        return ""
    if name in MONEY_COLUMNS:
        return str(money(value))
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") or "0"
    if name == "hours_saved":
        return f"{value:.2f}"
    return value


@require_GET
@login_required
def roi_export(request):
    """The ROI data behind one chart (or all), one row per use case and day with activity, as CSV."""
    chart = request.GET.get("chart", "all")
    if chart not in CHARTS:
        return HttpResponseBadRequest(
            f"Unknown chart {chart!r}; use one of {', '.join(CHARTS)}.", content_type="text/plain"
        )
    form, filters = _filters(request)
    if form.is_bound and not form.is_valid():
        return HttpResponseBadRequest(
            " ".join(form.errors.get("__all__", [])) or "Invalid filters.", content_type="text/plain"
        )
    summary = _summary(request, filters)
    filename = f"doorstep-roi-{chart}-{filters['start']:%Y%m%d}-{filters['end']:%Y%m%d}.csv"
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    if chart == "reasons":
        writer.writerow(["source", "reason", "count", "share", "start", "end"])
        for row in summary["rejections"]:
            writer.writerow(
                [
                    row["source"],
                    csv_safe(row["reason"]),
                    row["count"],
                    _cell("share", row["share"]),
                    filters["start"].isoformat(),
                    filters["end"].isoformat(),
                ]
            )
        return response
    columns = CHARTS[chart][1] or ALL_COLUMNS
    writer.writerow(["day", "use_case", "use_case_name", "business_unit", *columns])
    for row in summary["daily"]:
        use_case = row["use_case"]
        writer.writerow(
            [
                row["day"].isoformat(),
                use_case.slug,
                csv_safe(use_case.name),
                csv_safe(use_case.business_unit),
                *(_cell(name, row[name]) for name in columns),
            ]
        )
    return response
