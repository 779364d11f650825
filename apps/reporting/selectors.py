"""ROI reads. Only rollup rows are read (never the big fact tables), of use cases the user may view.

Every money and rate figure is computed from summed rollup counts and the use case's baseline, and
comes with an `explain` string that spells the formula with its inputs, so an executive can check it.
Money is Decimal throughout; it is rounded to cents only when shown.
"""

import datetime as dt
from collections import defaultdict
from decimal import ROUND_HALF_UP, Decimal

from django.db.models import Sum

from apps.core.permissions import restrict
from apps.workflows.models import UseCase

from .models import DailyRollup, RejectionRollup

CENT = Decimal("0.01")
ZERO = Decimal("0")
SECONDS_PER_HOUR = Decimal("3600")
MINUTES_PER_HOUR = Decimal("60")

COUNTS = (
    "recommendations",
    "delivered",
    "shown",
    "accepted",
    "acted_on",
    "reviewed",
    "approved",
    "edited",
    "rejected",
    "blocked",
    "cycle_count",
)
FLOATS = ("review_seconds", "cycle_seconds_total")
# Linear in the counts, so sums over days, use cases or business units stay exact.
MONEY = ("model_cost", "reviewer_cost", "time_value", "outcome_value", "net_value")
FUNNEL = (
    ("recommendations", "Recommendations"),
    ("delivered", "Delivered"),
    ("shown", "Shown"),
    ("accepted", "Accepted"),
    ("acted_on", "Acted on"),
)


# -- formatting for the explanations ---------------------------------------------------------------


def money(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def fmt_money(value: Decimal | None) -> str:
    if value is None:
        return "n/a"
    value = money(value)
    return f"−${abs(value):,.2f}" if value < 0 else f"${value:,.2f}"


def fmt_num(value) -> str:
    if isinstance(value, Decimal):
        value = value.normalize()
        return f"{value:,f}" if value != value.to_integral() else f"{int(value):,}"
    if isinstance(value, float):
        return f"{value:,.1f}"
    return f"{value:,}"


def fmt_rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def fmt_minutes(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} min"


def _ratio(numerator, denominator) -> float | None:
    return None if not denominator else float(numerator) / float(denominator)


# -- figures ---------------------------------------------------------------------------------------


def _row_figures(row: dict, use_case: UseCase) -> dict:
    """The additive figures of one rollup row, priced with its use case's baseline."""
    accepted = row["accepted"]
    hourly = use_case.hourly_cost
    manual = use_case.manual_minutes_per_item
    reviewer_cost = Decimal(repr(float(row["review_seconds"]))) / SECONDS_PER_HOUR * hourly
    time_value = accepted * manual / MINUTES_PER_HOUR * hourly
    outcome_value = accepted * use_case.value_per_accepted
    model_cost = row["model_cost"] or ZERO
    figures = {name: row[name] for name in COUNTS}
    figures.update({name: float(row[name]) for name in FLOATS})
    figures.update(
        model_cost=model_cost,
        reviewer_cost=reviewer_cost,
        time_value=time_value,
        outcome_value=outcome_value,
        net_value=time_value + outcome_value - model_cost - reviewer_cost,
        hours_saved=accepted * manual / MINUTES_PER_HOUR,
        baseline_weight=row["cycle_count"] * manual,
    )
    return figures


def _empty() -> dict:
    figures = {name: 0 for name in COUNTS}
    figures.update({name: 0.0 for name in FLOATS})
    figures.update({name: ZERO for name in MONEY})
    figures["baseline_weight"] = figures["hours_saved"] = ZERO
    return figures


def _add(total: dict, figures: dict) -> None:
    for name, value in figures.items():
        total[name] += value


def _derive(figures: dict, use_case: UseCase | None = None, members: int = 0) -> dict:
    """Rates and unit costs from summed figures, each with the formula and its inputs spelled out.
    With `use_case`, the explanations quote its baseline; otherwise they are sums over `members`."""
    f = figures
    f["acceptance_rate"] = _ratio(f["accepted"], f["shown"])
    f["override_rate"] = _ratio(f["edited"] + f["rejected"], f["reviewed"])
    f["avg_cycle_minutes"] = f["cycle_seconds_total"] / f["cycle_count"] / 60 if f["cycle_count"] else None
    if use_case is not None:
        f["baseline_minutes"] = float(use_case.manual_minutes_per_item)
    else:
        f["baseline_minutes"] = _ratio(f["baseline_weight"], f["cycle_count"])
    total_cost = f["model_cost"] + f["reviewer_cost"]
    f["cost_per_accepted"] = total_cost / f["accepted"] if f["accepted"] else None
    review_hours = f["review_seconds"] / 3600

    explain = {
        "recommendations": (
            f"{fmt_num(f['recommendations'])} recommendations created ({fmt_num(f['blocked'])} blocked by policy)"
        ),
        "acceptance_rate": (
            f"acceptance rate = {fmt_num(f['accepted'])} accepted / {fmt_num(f['shown'])} shown "
            f"= {fmt_rate(f['acceptance_rate'])}"
        ),
        "override_rate": (
            f"override rate = ({fmt_num(f['edited'])} edited + {fmt_num(f['rejected'])} rejected) / "
            f"{fmt_num(f['reviewed'])} reviewed = {fmt_rate(f['override_rate'])}"
        ),
        "avg_cycle_minutes": (
            f"cycle time = {fmt_num(f['cycle_seconds_total'])} s created→delivered / "
            f"{fmt_num(f['cycle_count'])} delivered / 60 = {fmt_minutes(f['avg_cycle_minutes'])} "
            f"(baseline {fmt_minutes(f['baseline_minutes'])} manual"
            f"{'' if use_case else ', weighted by delivered items'})"
        ),
        "model_cost": f"model cost = sum of recommendation costs = {fmt_money(f['model_cost'])}",
    }
    if use_case is not None:
        hourly, manual = use_case.hourly_cost, use_case.manual_minutes_per_item
        per_accepted = use_case.value_per_accepted
        time_part = f"{fmt_num(f['accepted'])} accepted × {fmt_num(manual)} min × {fmt_money(hourly)}/h"
        explain.update(
            reviewer_cost=(
                f"reviewer cost = {review_hours:,.2f} h reviewing × {fmt_money(hourly)}/h "
                f"= {fmt_money(f['reviewer_cost'])}"
            ),
            hours_saved=(
                f"hours saved = {fmt_num(f['accepted'])} accepted × {fmt_num(manual)} min / 60 "
                f"= {f['hours_saved']:,.1f} h"
            ),
            time_value=f"time value = {time_part} = {fmt_money(f['time_value'])}",
            outcome_value=(
                f"outcome value = {fmt_num(f['accepted'])} accepted × {fmt_money(per_accepted)} "
                f"= {fmt_money(f['outcome_value'])}"
            ),
            net_value=(
                f"net value = {time_part} + {fmt_num(f['accepted'])} × {fmt_money(per_accepted)} "
                f"− {fmt_money(f['model_cost'])} model − {fmt_money(f['reviewer_cost'])} review "
                f"= {fmt_money(f['net_value'])}"
            ),
        )
    else:
        scope = f"summed over {members} use case{'s' if members != 1 else ''}"
        explain.update(
            reviewer_cost=(
                f"reviewer cost = Σ review hours × hourly cost ({review_hours:,.2f} h, {scope}) "
                f"= {fmt_money(f['reviewer_cost'])}"
            ),
            hours_saved=f"hours saved = Σ accepted × manual minutes / 60 ({scope}) = {f['hours_saved']:,.1f} h",
            time_value=(
                f"time value = Σ accepted × manual minutes × hourly cost ({scope}) = {fmt_money(f['time_value'])}"
            ),
            outcome_value=(
                f"outcome value = Σ accepted × value per accepted ({scope}) = {fmt_money(f['outcome_value'])}"
            ),
            net_value=(
                f"net value = {fmt_money(f['time_value'])} time value + {fmt_money(f['outcome_value'])} "
                f"outcome value − {fmt_money(f['model_cost'])} model − {fmt_money(f['reviewer_cost'])} "
                f"review = {fmt_money(f['net_value'])} ({scope})"
            ),
        )
    explain["cost_per_accepted"] = (
        f"cost per accepted = ({fmt_money(f['model_cost'])} model + {fmt_money(f['reviewer_cost'])} review) / "
        f"{fmt_num(f['accepted'])} accepted = {fmt_money(f['cost_per_accepted'])}"
    )
    f["explain"] = explain
    # Display strings, so templates need no formatting filters.
    f["shown_as"] = {
        **{name: fmt_num(f[name]) for name in COUNTS},
        **{name: fmt_money(f[name]) for name in (*MONEY, "cost_per_accepted")},
        "acceptance_rate": fmt_rate(f["acceptance_rate"]),
        "override_rate": fmt_rate(f["override_rate"]),
        "avg_cycle_minutes": fmt_minutes(f["avg_cycle_minutes"]),
        "baseline_minutes": fmt_minutes(f["baseline_minutes"]),
        "hours_saved": f"{f['hours_saved']:,.1f} h",
        "review_hours": f"{review_hours:,.1f} h",
    }
    return f


# -- the summary -----------------------------------------------------------------------------------


def roi_use_cases(*, user, use_case_slug: str | None = None, business_unit: str | None = None) -> list[UseCase]:
    """The use cases whose ROI the user may read, narrowed by the filters."""
    use_cases = restrict(UseCase.objects.all(), user, "view_usecase")
    if use_case_slug:
        use_cases = use_cases.filter(slug=use_case_slug)
    if business_unit:
        use_cases = use_cases.filter(business_unit=business_unit)
    return list(
        use_cases.only(
            "pk", "slug", "name", "business_unit", "manual_minutes_per_item", "hourly_cost", "value_per_accepted"
        ).order_by("name")
    )


def roi_summary(
    *, user, start: dt.date, end: dt.date, use_case_slug: str | None = None, business_unit: str | None = None
) -> dict:
    """ROI of the use cases the user may view (view_usecase), between start and end inclusive.

    Three queries whatever the range: the visible use cases, their daily rollup rows, their rejection counts.
    Returns `totals`, `use_cases`, `business_units` (figure dicts with `explain`), `daily` (one
    figure dict per use case and day that had a rollup, for export), `rejections` (the top reasons, with
    `explain`) and `charts` (plain floats for Plotly).
    """
    use_cases = roi_use_cases(user=user, use_case_slug=use_case_slug, business_unit=business_unit)
    by_id = {use_case.pk: use_case for use_case in use_cases}
    rows = (
        DailyRollup.objects.filter(use_case_id__in=list(by_id), day__gte=start, day__lte=end)
        .values("use_case_id", "day", *COUNTS, *FLOATS, "model_cost")
        .order_by("day", "use_case_id")
        if by_id
        else []
    )
    days = [start + dt.timedelta(days=n) for n in range((end - start).days + 1)]
    per_use_case = {pk: _empty() for pk in by_id}
    per_day = defaultdict(_empty)
    per_use_case_day: dict[int, dict[dt.date, dict]] = defaultdict(dict)
    daily = []
    for row in rows:
        use_case = by_id[row["use_case_id"]]
        figures = _row_figures(row, use_case)
        _add(per_use_case[use_case.pk], figures)
        _add(per_day[row["day"]], figures)
        per_use_case_day[use_case.pk][row["day"]] = figures
        daily.append((row["day"], use_case, figures))

    totals = _empty()
    units: dict[str, dict] = {}
    unit_members: dict[str, int] = defaultdict(int)
    use_case_figures = []
    for use_case in use_cases:
        figures = per_use_case[use_case.pk]
        _add(totals, figures)
        _add(units.setdefault(use_case.business_unit, _empty()), figures)
        unit_members[use_case.business_unit] += 1
        use_case_figures.append({"use_case": use_case, **_derive(dict(figures), use_case)})
    totals = _derive(totals, members=len(use_cases))
    business_units = [
        {"name": name, "use_cases": unit_members[name], **_derive(figures, members=unit_members[name])}
        for name, figures in sorted(units.items())
    ]
    daily_figures = [
        {"day": day, "use_case": use_case, **_derive(dict(figures), use_case)} for day, use_case, figures in daily
    ]
    rejections = rejection_reasons(use_case_ids=list(by_id), start=start, end=end)
    charts = _charts(days, per_day, per_use_case_day, use_case_figures, totals)
    charts["reasons"] = {
        "labels": [f"{r['reason']} ({r['source_label'].lower()})" for r in rejections[:TOP_REASONS]],
        "values": [r["count"] for r in rejections[:TOP_REASONS]],
    }
    return {
        "start": start,
        "end": end,
        "totals": totals,
        "use_cases": use_case_figures,
        "business_units": business_units,
        "daily": daily_figures,
        "rejections": rejections,
        "charts": charts,
    }


TOP_REASONS = 8


def rejection_reasons(*, use_case_ids: list[int], start: dt.date, end: dt.date) -> list[dict]:
    """Every rejection reason given on those use cases between start and end, most frequent first, from the
    rejection rollups (one grouped query). Each has `count`, `share` of all rejections and `explain`."""
    if not use_case_ids:
        return []
    rows = list(
        RejectionRollup.objects.filter(use_case_id__in=use_case_ids, day__gte=start, day__lte=end)
        .values("source", "reason")
        .annotate(n=Sum("count"))
        .order_by("-n", "source", "reason")
    )
    total = sum(row["n"] for row in rows)
    labels = dict(RejectionRollup.Source.choices)
    counted = {
        RejectionRollup.Source.REVIEW: "review verdicts rejecting with this reason",
        RejectionRollup.Source.FEEDBACK: "'rejected' feedback events from the business app with this reason",
    }
    return [
        {
            "source": row["source"],
            "source_label": labels[row["source"]],
            "reason": row["reason"],
            "count": row["n"],
            "share": row["n"] / total,
            "shown_as": {"count": fmt_num(row["n"]), "share": fmt_rate(row["n"] / total)},
            "explain": (
                f"{fmt_num(row['n'])} {counted[row['source']]}, {start} to {end}; "
                f"share = {fmt_num(row['n'])} / {fmt_num(total)} rejections = {fmt_rate(row['n'] / total)}"
            ),
        }
        for row in rows
    ]


def _float(value) -> float | None:
    return None if value is None else round(float(value), 4)


def _day_series(days, figures_by_day) -> dict:
    series = {"acceptance_rate": [], "override_rate": [], "cycle_minutes": [], "cost_per_accepted": []}
    for day in days:
        f = figures_by_day.get(day)
        if f is None:
            for values in series.values():
                values.append(None)
            continue
        series["acceptance_rate"].append(_float(_ratio(f["accepted"], f["shown"])))
        series["override_rate"].append(_float(_ratio(f["edited"] + f["rejected"], f["reviewed"])))
        series["cycle_minutes"].append(
            _float(f["cycle_seconds_total"] / f["cycle_count"] / 60) if f["cycle_count"] else None
        )
        cost = f["model_cost"] + f["reviewer_cost"]
        series["cost_per_accepted"].append(_float(cost / f["accepted"]) if f["accepted"] else None)
    return series


def _charts(days, per_day, per_use_case_day, use_case_figures, totals) -> dict:
    """Chart data as plain JSON (floats, ISO days, null for a day without a denominator)."""
    return {
        "days": [day.isoformat() for day in days],
        "funnel": {
            "labels": [label for _, label in FUNNEL],
            "values": [totals[name] for name, _ in FUNNEL],
        },
        "totals": _day_series(days, per_day),
        "use_cases": [
            {
                "slug": f["use_case"].slug,
                "name": f["use_case"].name,
                "baseline_minutes": f["baseline_minutes"],
                **_day_series(days, per_use_case_day.get(f["use_case"].pk, {})),
            }
            for f in use_case_figures
        ],
        "net_value": {
            "labels": [f["use_case"].name for f in use_case_figures],
            "values": [_float(money(f["net_value"])) for f in use_case_figures],
        },
    }
