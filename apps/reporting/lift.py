"""Lift against the control group, with its uncertainty, and the net value it supports.

Per use case and date range, subjects triggered in the range fall in two groups:

- treated: a recommendation was made for them (its run's request time, or its creation for outputs of a
  model elsewhere, is the trigger);
- holdout: a run or submission was recorded as held out (reporting.holdout): no recommendation at all.

A subject found in both (the holdout share changed within the range) is left out of both. Each subject
counts once, from its first trigger in the range; an outcome counts when it occurred at or after that trigger.

- outcome rate: share of subjects with at least one positive outcome (kinds given per call); the
  difference treated − holdout with a 95 % interval from the two-proportion normal approximation
  (unpooled standard error);
- cycle time: trigger → first outcome (any kind), in hours, for subjects with an outcome; the difference of
  means with a 95 % Welch interval (Welch–Satterthwaite degrees of freedom).

Below MIN_SAMPLE subjects in either group a measure says "not enough data yet" instead of a number.

The page reads the lift rows (reporting.LiftSubjectDay, kept by the rollup refresh): one aggregate query per
use case gives each group's subjects, wins, and the count, sum and sum of squares of its cycle hours. The rows
record whether a positive outcome of DEFAULT_POSITIVE_KINDS followed, so another set of positive kinds is
computed live from recommendations, runs and outcomes (`lift_groups_live`), with the same result on the
default set.
"""

import datetime as dt
import math
from dataclasses import dataclass
from decimal import Decimal

from django.db.models import Count, F, Min, Q, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone
from scipy import stats

from apps.core.permissions import restrict
from apps.workflows.models import Recommendation, Run, UseCase

from .models import BusinessOutcome, DailyRollup, LiftSubjectDay
from .selectors import SECONDS_PER_HOUR, ZERO, fmt_money, fmt_num, fmt_rate

MIN_SAMPLE = 30
CONFIDENCE = 0.95
Z_95 = 1.959963984540054  # the standard normal's 97.5th percentile
DEFAULT_POSITIVE_KINDS = ("renewal_won", "ticket_resolved", "contract_signed", "deal_won", "churn_prevented")
NOT_ENOUGH = "not enough data yet"


@dataclass
class Estimate:
    """A difference treated − holdout with its 95 % interval, or `enough=False` and why not."""

    treated: float | None
    holdout: float | None
    n_treated: int
    n_holdout: int
    difference: float | None = None
    low: float | None = None
    high: float | None = None
    enough: bool = False
    explain: str = ""


@dataclass
class Sample:
    """Count, mean and sample variance (None below two values) of one group's cycle hours."""

    n: int
    mean: float | None = None
    variance: float | None = None

    @classmethod
    def of(cls, values: list[float]) -> "Sample":
        n = len(values)
        mean = sum(values) / n if n else None
        variance = sum((x - mean) ** 2 for x in values) / (n - 1) if n > 1 else None
        return cls(n, mean, variance)

    @classmethod
    def of_sums(cls, n: int, total: float | None, squares: float | None) -> "Sample":
        """From the count, sum and sum of squares (what an aggregate query gives on every backend)."""
        mean = total / n if n else None
        # Σx² − n·mean² loses digits only when the spread is tiny against the mean; never below zero.
        variance = max(0.0, (squares - total * mean) / (n - 1)) if n > 1 else None
        return cls(n, mean, variance)


@dataclass
class Group:
    """What one group (treated or holdout) of a range shows: subjects, those with a positive outcome after
    their trigger, and the cycle hours of those with any outcome after it."""

    subjects: int
    wins: int
    cycles: Sample


def _bounds(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    """[start 00:00, end+1 00:00) in the current time zone, as the rollups count days."""
    tz = timezone.get_current_timezone()
    return (
        dt.datetime.combine(start, dt.time.min, tzinfo=tz),
        dt.datetime.combine(end + dt.timedelta(days=1), dt.time.min, tzinfo=tz),
    )


def lift_groups(*, use_case: UseCase, start: dt.date, end: dt.date) -> tuple[dict, dict]:
    """({subject: first trigger} treated, {subject: first trigger} holdout) for subjects triggered in range."""
    lower, upper = _bounds(start, end)
    treated = dict(
        Recommendation.objects.filter(use_case=use_case)
        .annotate(trigger=Coalesce(F("run__created_at"), F("created_at")))
        .filter(trigger__gte=lower, trigger__lt=upper)
        .values("subject_key")
        .annotate(first=Min("trigger"))
        .values_list("subject_key", "first")
        .order_by()
    )
    holdout = dict(
        Run.objects.filter(use_case=use_case, status=Run.Status.HELD_OUT, created_at__gte=lower, created_at__lt=upper)
        .values("subject_key")
        .annotate(first=Min("created_at"))
        .values_list("subject_key", "first")
        .order_by()
    )
    both = treated.keys() & holdout.keys()
    for subject in both:
        del treated[subject], holdout[subject]
    return treated, holdout


def _outcomes(use_case: UseCase, subjects, since: dt.datetime) -> dict[str, list[tuple[dt.datetime, str]]]:
    """The outcomes of `subjects` from `since` on: one range read of the (use case, occurred_at) index, kept
    for the subjects asked (an IN list of every triggered subject would cost more than the whole read)."""
    wanted = set(subjects)
    found: dict[str, list] = {}
    rows = BusinessOutcome.objects.filter(use_case=use_case, occurred_at__gte=since).values_list(
        "subject_key", "occurred_at", "kind"
    )
    for subject, occurred_at, kind in rows.iterator(chunk_size=5000):
        if subject in wanted:
            found.setdefault(subject, []).append((occurred_at, kind))
    return found


def lift_groups_live(*, use_case: UseCase, start: dt.date, end: dt.date, positive_kinds) -> dict[bool, Group]:
    """Each group's measures ({False: treated, True: holdout}) computed from recommendations, runs and outcomes."""
    treated, holdout = lift_groups(use_case=use_case, start=start, end=end)
    outcomes = _outcomes(use_case, treated.keys() | holdout.keys(), since=_bounds(start, end)[0])
    positive = set(positive_kinds)

    def measure(group: dict) -> Group:
        wins, cycles = 0, []
        for subject, trigger in group.items():
            after = sorted((at, kind) for at, kind in outcomes.get(subject, ()) if at >= trigger)
            if not after:
                continue
            cycles.append((after[0][0] - trigger).total_seconds() / 3600)
            if any(kind in positive for _, kind in after):
                wins += 1
        return Group(len(group), wins, Sample.of(cycles))

    return {False: measure(treated), True: measure(holdout)}


def lift_groups_rolled_up(*, use_case: UseCase, start: dt.date, end: dt.date) -> dict[bool, Group]:
    """Each group's measures ({False: treated, True: holdout}, positive = DEFAULT_POSITIVE_KINDS) from the lift
    rows: one aggregate query. A subject counts from its first row in the range, and not at all when it was
    triggered in the other group inside the range too."""
    rows = (
        LiftSubjectDay.objects.filter(use_case=use_case, day__gte=start, day__lte=end)
        .filter(
            Q(previous_day=None) | Q(previous_day__lt=start),
            Q(other_before=None) | Q(other_before__lt=start),
            Q(other_after=None) | Q(other_after__gt=end),
        )
        .values("holdout")
        .annotate(
            subjects=Count("pk"),
            wins=Count("pk", filter=Q(won=True)),
            cycles=Count("cycle_hours"),
            total=Sum("cycle_hours"),
            squares=Sum(F("cycle_hours") * F("cycle_hours")),
        )
        .order_by()
    )
    groups = {False: Group(0, 0, Sample(0)), True: Group(0, 0, Sample(0))}
    for row in rows:
        cycles = Sample.of_sums(row["cycles"], row["total"], row["squares"])
        groups[row["holdout"]] = Group(row["subjects"], row["wins"], cycles)
    return groups


def rate_difference(x1: int, n1: int, x0: int, n0: int, *, min_sample: int = MIN_SAMPLE) -> Estimate:
    """Treated x1/n1 against holdout x0/n0: p1 − p0 ± z·sqrt(p1(1−p1)/n1 + p0(1−p0)/n0)."""
    p1 = x1 / n1 if n1 else None
    p0 = x0 / n0 if n0 else None
    estimate = Estimate(p1, p0, n1, n0)
    groups = f"treated {x1}/{n1}, holdout {x0}/{n0}"
    if n1 < min_sample or n0 < min_sample:
        estimate.explain = f"{NOT_ENOUGH}: {groups}; at least {min_sample} subjects per group are needed"
        return estimate
    se = math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    estimate.difference = p1 - p0
    estimate.low, estimate.high = estimate.difference - Z_95 * se, estimate.difference + Z_95 * se
    estimate.enough = True
    estimate.explain = (
        f"outcome rate lift = {p1:.1%} treated ({x1}/{n1}) − {p0:.1%} holdout ({x0}/{n0}) = "
        f"{estimate.difference:+.1%}; 95 % interval ± {Z_95:.2f} × √(p₁(1−p₁)/n₁ + p₀(1−p₀)/n₀) = ± {Z_95 * se:.1%} "
        f"→ [{estimate.low:+.1%}, {estimate.high:+.1%}]"
    )
    return estimate


def mean_difference(treated: Sample, holdout: Sample, *, min_sample: int = MIN_SAMPLE) -> Estimate:
    """Welch: m1 − m0 ± t(0.975, ν)·sqrt(s1²/n1 + s0²/n0), ν by Welch–Satterthwaite."""
    n1, n0 = treated.n, holdout.n
    m1, m0 = treated.mean, holdout.mean
    estimate = Estimate(m1, m0, n1, n0)
    if n1 < min_sample or n0 < min_sample:
        estimate.explain = (
            f"{NOT_ENOUGH}: {n1} treated and {n0} holdout subjects with an outcome; "
            f"at least {min_sample} per group are needed"
        )
        return estimate
    v1, v0 = treated.variance / n1, holdout.variance / n0
    se = math.sqrt(v1 + v0)
    estimate.difference = m1 - m0
    if se == 0:
        estimate.low = estimate.high = estimate.difference
        t = 0.0
    else:
        df = (v1 + v0) ** 2 / (v1**2 / (n1 - 1) + v0**2 / (n0 - 1))
        t = float(stats.t.ppf(0.5 + CONFIDENCE / 2, df))
        estimate.low, estimate.high = estimate.difference - t * se, estimate.difference + t * se
    estimate.enough = True
    estimate.explain = (
        f"cycle time difference = {m1:,.1f} h treated (n={n1}) − {m0:,.1f} h holdout (n={n0}) = "
        f"{estimate.difference:+,.1f} h; 95 % Welch interval ± {t:.2f} × √(s₁²/n₁ + s₀²/n₀) = ± {t * se:,.1f} h "
        f"→ [{estimate.low:+,.1f}, {estimate.high:+,.1f}] h"
    )
    return estimate


def use_case_lift(
    *,
    use_case: UseCase,
    start: dt.date,
    end: dt.date,
    positive_kinds=DEFAULT_POSITIVE_KINDS,
    min_sample: int = MIN_SAMPLE,
) -> dict:
    """Outcome-rate lift and cycle-time difference of one use case (no permission check: see lift_summary):
    from the lift rows for the default positive kinds, computed live for any other set."""
    positive = set(positive_kinds)
    if positive == set(DEFAULT_POSITIVE_KINDS):
        groups = lift_groups_rolled_up(use_case=use_case, start=start, end=end)
    else:
        groups = lift_groups_live(use_case=use_case, start=start, end=end, positive_kinds=positive)
    treated, holdout = groups[False], groups[True]
    return {
        "use_case": use_case,
        "positive_kinds": sorted(positive),
        "min_sample": min_sample,
        "outcome_rate": rate_difference(
            treated.wins, treated.subjects, holdout.wins, holdout.subjects, min_sample=min_sample
        ),
        "cycle_hours": mean_difference(treated.cycles, holdout.cycles, min_sample=min_sample),
    }


def _positive_value(use_case: UseCase, start: dt.date, end: dt.date, positive_kinds) -> tuple[Decimal, str]:
    """The value of one positive outcome: the mean recorded value of positive outcomes in range (treated and
    holdout alike), or the use case's value per accepted recommendation when none carries a value."""
    lower, upper = _bounds(start, end)
    values = BusinessOutcome.objects.filter(
        use_case=use_case, kind__in=list(positive_kinds), occurred_at__gte=lower, occurred_at__lt=upper
    ).aggregate(total=Sum("value"), count=Count("value"))
    total, count = values["total"], values["count"]
    if count:
        mean = total / count
        return mean, f"mean value of {fmt_num(count)} positive outcomes recorded in range = {fmt_money(mean)}"
    return (
        use_case.value_per_accepted,
        f"no outcome values recorded: value per accepted = {fmt_money(use_case.value_per_accepted)}",
    )


def _hours(value: float | None) -> str:
    return "n/a" if value is None else f"{value:,.1f} h"


def use_case_net_value(
    *, use_case: UseCase, start: dt.date, end: dt.date, positive_kinds=DEFAULT_POSITIVE_KINDS, min_sample=MIN_SAMPLE
) -> dict:
    """Net value = time saved × hourly cost + outcome lift × treated subjects × value of an outcome
    − model cost − reviewer time cost, each input with its formula in `explain`. Time saved, model cost and
    review time come from the daily rollups; the lift term is zero (and says why) until both groups reach
    the minimum sample, and carries the interval of the lift into money (`outcome_value_low/high`)."""
    lift = use_case_lift(use_case=use_case, start=start, end=end, positive_kinds=positive_kinds, min_sample=min_sample)
    rows = DailyRollup.objects.filter(use_case=use_case, day__gte=start, day__lte=end)
    accepted = review_seconds = 0
    model_cost = ZERO
    for row in rows.values("accepted", "review_seconds", "model_cost"):
        accepted += row["accepted"]
        review_seconds += row["review_seconds"]
        model_cost += row["model_cost"] or ZERO
    hourly, manual = use_case.hourly_cost, use_case.manual_minutes_per_item
    hours_saved = accepted * manual / Decimal(60)
    time_value = hours_saved * hourly
    review_hours = Decimal(repr(float(review_seconds))) / SECONDS_PER_HOUR
    reviewer_cost = review_hours * hourly
    rate = lift["outcome_rate"]
    per_outcome, per_outcome_explain = _positive_value(use_case, start, end, positive_kinds)
    n_treated = rate.n_treated
    if rate.enough:
        outcome_value = Decimal(repr(rate.difference)) * n_treated * per_outcome
        low = Decimal(repr(rate.low)) * n_treated * per_outcome
        high = Decimal(repr(rate.high)) * n_treated * per_outcome
        outcome_explain = (
            f"outcome value = {rate.difference:+.2%} lift × {fmt_num(n_treated)} treated subjects × "
            f"{fmt_money(per_outcome)} = {fmt_money(outcome_value)} (95 %: {fmt_money(low)} to {fmt_money(high)})"
        )
    else:
        outcome_value, low, high = ZERO, None, None
        outcome_explain = f"outcome value = $0.00 ({rate.explain})"
    net = time_value + outcome_value - model_cost - reviewer_cost
    cycle = lift["cycle_hours"]
    shown_as = {
        "n_treated": fmt_num(rate.n_treated),
        "n_holdout": fmt_num(rate.n_holdout),
        "rate_treated": fmt_rate(rate.treated),
        "rate_holdout": fmt_rate(rate.holdout),
        "rate_lift": f"{rate.difference:+.1%}" if rate.enough else NOT_ENOUGH,
        "rate_interval": f"{rate.low:+.1%} to {rate.high:+.1%}" if rate.enough else "",
        "cycle_treated": _hours(cycle.treated),
        "cycle_holdout": _hours(cycle.holdout),
        "cycle_difference": f"{cycle.difference:+,.1f} h" if cycle.enough else NOT_ENOUGH,
        "cycle_interval": f"{cycle.low:+,.1f} h to {cycle.high:+,.1f} h" if cycle.enough else "",
        "outcome_interval": f"{fmt_money(low)} to {fmt_money(high)}" if rate.enough else "",
        **{
            name: fmt_money(value)
            for name, value in (
                ("time_value", time_value),
                ("outcome_value", outcome_value),
                ("model_cost", model_cost),
                ("reviewer_cost", reviewer_cost),
                ("net_value", net),
            )
        },
    }
    return {
        **lift,
        "hours_saved": hours_saved,
        "time_value": time_value,
        "outcome_value": outcome_value,
        "outcome_value_low": low,
        "outcome_value_high": high,
        "value_per_outcome": per_outcome,
        "model_cost": model_cost,
        "reviewer_cost": reviewer_cost,
        "net_value": net,
        "shown_as": shown_as,
        "explain": {
            "hours_saved": (
                f"time saved = {fmt_num(accepted)} accepted × {fmt_num(manual)} min / 60 = {hours_saved:,.1f} h"
            ),
            "time_value": f"time value = {hours_saved:,.1f} h × {fmt_money(hourly)}/h = {fmt_money(time_value)}",
            "outcome_rate": rate.explain,
            "cycle_hours": lift["cycle_hours"].explain,
            "value_per_outcome": f"value of one positive outcome: {per_outcome_explain}",
            "outcome_value": outcome_explain,
            "model_cost": f"model cost = sum of recommendation costs = {fmt_money(model_cost)}",
            "reviewer_cost": (
                f"reviewer cost = {review_hours:,.2f} h reviewing × {fmt_money(hourly)}/h = {fmt_money(reviewer_cost)}"
            ),
            "net_value": (
                f"net value = {fmt_money(time_value)} time + {fmt_money(outcome_value)} outcome lift "
                f"− {fmt_money(model_cost)} model − {fmt_money(reviewer_cost)} review = {fmt_money(net)}"
            ),
        },
    }


def lift_summary(
    *,
    user,
    start: dt.date,
    end: dt.date,
    use_case_slug: str | None = None,
    business_unit: str | None = None,
    positive_kinds=DEFAULT_POSITIVE_KINDS,
) -> list[dict]:
    """Lift and net value of each use case the user may view (view_usecase) with a holdout share, by name."""
    use_cases = restrict(UseCase.objects.all(), user, "view_usecase").filter(holdout_share__gt=0)
    if use_case_slug:
        use_cases = use_cases.filter(slug=use_case_slug)
    if business_unit:
        use_cases = use_cases.filter(business_unit=business_unit)
    return [
        use_case_net_value(use_case=use_case, start=start, end=end, positive_kinds=positive_kinds)
        for use_case in use_cases.order_by("name")
    ]
