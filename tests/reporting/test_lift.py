"""Lift against the control group on a fixed dataset, checked against a reference computed here independently:
the two-proportion interval by hand with math, the Welch interval with scipy's own Welch t-test; the "not
enough data yet" path; and the net value with each input's formula."""

import datetime as dt
import math
import statistics
from decimal import Decimal

import pytest
from scipy import stats

from apps.reporting.lift import (
    DEFAULT_POSITIVE_KINDS,
    lift_groups_live,
    lift_groups_rolled_up,
    lift_summary,
    mean_difference,
    rate_difference,
    use_case_lift,
    use_case_net_value,
)
from apps.reporting.models import BusinessOutcome, DailyRollup
from apps.reporting.services import rollup_refresh
from apps.workflows.models import Recommendation, Run, UseCase

START, END = dt.date(2026, 1, 5), dt.date(2026, 1, 25)
T0 = dt.datetime(2026, 1, 10, 9, tzinfo=dt.UTC)


@pytest.fixture
def use_case(world):
    return UseCase.objects.create(
        slug="renewals",
        name="Renewal nudges",
        business_unit=world.churn.business_unit,
        owner=world.churn.owner,
        risk_tier=world.churn.risk_tier,
        status=world.churn.status,
        holdout_share=Decimal("0.2"),
        manual_minutes_per_item=Decimal("30"),
        hourly_cost=Decimal("60"),
        value_per_accepted=Decimal("100"),
    )


def _outcome(use_case, subject, kind, at, value=None):
    return BusinessOutcome(
        use_case=use_case,
        subject_key=subject,
        kind=kind,
        occurred_at=at,
        value=value,
        external_id=f"{subject}-{kind}-{at.isoformat()}",
    )


def _dataset(use_case, *, treated=40, treated_wins=26, holdout=34, holdout_wins=12):
    """Treated subjects T-i (a recommendation each), holdout subjects H-i (a held-out run each), with outcomes.
    Returns the cycle hours (trigger → first outcome) per group, as the reference sees them."""
    outcomes, cycles = [], {"treated": [], "holdout": []}
    for i in range(treated):
        subject, trigger = f"T-{i}", T0 + dt.timedelta(hours=i)
        Recommendation.objects.create(use_case=use_case, subject_key=subject, content={}, created_at=trigger)
        hours = 20 + (i * 7) % 31  # spread, deterministic
        kind = "renewal_won" if i < treated_wins else "renewal_lost"
        outcomes.append(_outcome(use_case, subject, kind, trigger + dt.timedelta(hours=hours), Decimal("500")))
        cycles["treated"].append(hours)
    for i in range(holdout):
        subject, trigger = f"H-{i}", T0 + dt.timedelta(hours=i, minutes=30)
        Run.objects.create(use_case=use_case, subject_key=subject, trigger="api", status="held_out", created_at=trigger)
        hours = 35 + (i * 11) % 43
        kind = "renewal_won" if i < holdout_wins else "renewal_lost"
        outcomes.append(_outcome(use_case, subject, kind, trigger + dt.timedelta(hours=hours), Decimal("700")))
        cycles["holdout"].append(hours)
    # Noise the computation must ignore: a win before the trigger, a subject in both groups, a subject
    # triggered after the range, a win of another use case.
    outcomes.append(_outcome(use_case, "H-0", "renewal_won", T0 - dt.timedelta(days=1)))
    Recommendation.objects.create(use_case=use_case, subject_key="BOTH", content={}, created_at=T0)
    Run.objects.create(use_case=use_case, subject_key="BOTH", trigger="api", status="held_out", created_at=T0)
    outcomes.append(_outcome(use_case, "BOTH", "renewal_won", T0 + dt.timedelta(hours=1)))
    Recommendation.objects.create(
        use_case=use_case, subject_key="LATE", content={}, created_at=T0 + dt.timedelta(days=30)
    )
    BusinessOutcome.objects.bulk_create(outcomes)
    rollup_refresh()  # what Celery beat runs: the page reads the lift rows it keeps
    return cycles


def test_outcome_rate_lift_and_interval_match_a_reference(world, use_case):
    _dataset(use_case)

    rate = use_case_lift(use_case=use_case, start=START, end=END)["outcome_rate"]

    p1, n1, p0, n0 = 26 / 40, 40, 12 / 34, 34
    half_width = 1.959963984540054 * math.sqrt(p1 * (1 - p1) / n1 + p0 * (1 - p0) / n0)
    assert rate.enough and (rate.n_treated, rate.n_holdout) == (40, 34)
    assert rate.treated == pytest.approx(p1) and rate.holdout == pytest.approx(p0)
    assert rate.difference == pytest.approx(p1 - p0, abs=1e-12)
    assert (rate.low, rate.high) == (
        pytest.approx(p1 - p0 - half_width, abs=1e-12),
        pytest.approx(p1 - p0 + half_width, abs=1e-12),
    )
    assert "[+7.9%, +51.5%]" in rate.explain  # what the page shows, rounded


def test_cycle_time_difference_and_welch_interval_match_a_reference(world, use_case):
    cycles = _dataset(use_case)

    cycle = use_case_lift(use_case=use_case, start=START, end=END)["cycle_hours"]

    treated, holdout = cycles["treated"], cycles["holdout"]
    reference = stats.ttest_ind(treated, holdout, equal_var=False).confidence_interval(0.95)
    assert cycle.enough
    assert cycle.difference == pytest.approx(statistics.mean(treated) - statistics.mean(holdout))
    assert (cycle.low, cycle.high) == (pytest.approx(reference.low), pytest.approx(reference.high))
    assert cycle.treated == pytest.approx(statistics.mean(treated))


def test_below_the_minimum_sample_it_says_not_enough_data_yet(world, use_case):
    _dataset(use_case, treated=40, treated_wins=20, holdout=29, holdout_wins=10)

    lift = use_case_lift(use_case=use_case, start=START, end=END)
    net = use_case_net_value(use_case=use_case, start=START, end=END)

    for estimate in (lift["outcome_rate"], lift["cycle_hours"]):
        assert not estimate.enough and estimate.difference is None and estimate.low is None
        assert estimate.explain.startswith("not enough data yet")
    assert net["outcome_value"] == 0 and net["outcome_value_low"] is None
    assert "not enough data yet" in net["explain"]["outcome_value"]
    # A smaller minimum, chosen by the caller, gives a number.
    assert use_case_lift(use_case=use_case, start=START, end=END, min_sample=20)["outcome_rate"].enough


def test_positive_kinds_are_chosen_per_call(world, use_case):
    _dataset(use_case)
    rate = use_case_lift(use_case=use_case, start=START, end=END, positive_kinds=["renewal_lost"])["outcome_rate"]
    assert (rate.treated, rate.holdout) == (pytest.approx(14 / 40), pytest.approx(22 / 34))


def test_net_value_adds_measured_parts_each_with_its_formula(world, use_case):
    _dataset(use_case)
    DailyRollup.objects.all().delete()  # the daily figures are set by hand here
    DailyRollup.objects.create(
        use_case=use_case, day=dt.date(2026, 1, 10), accepted=30, review_seconds=5400.0, model_cost=Decimal("12.5")
    )
    DailyRollup.objects.create(use_case=use_case, day=dt.date(2026, 1, 11), accepted=10, model_cost=Decimal("2.5"))
    DailyRollup.objects.create(use_case=use_case, day=dt.date(2026, 2, 11), accepted=99)  # outside the range

    net = use_case_net_value(use_case=use_case, start=START, end=END)

    # 40 accepted × 30 min = 20 h × $60; (26/40 − 12/34) × 40 treated × mean won value; 1.5 h review × $60.
    lift = Decimal(repr(26 / 40 - 12 / 34))
    mean_value = (26 * Decimal("500") + 12 * Decimal("700")) / 38  # the wins that carry a value
    outcome_value = lift * 40 * mean_value
    assert net["hours_saved"] == Decimal("20")
    assert net["time_value"] == Decimal("1200")
    assert net["model_cost"] == Decimal("15")
    assert net["reviewer_cost"] == Decimal("90")
    assert net["value_per_outcome"] == mean_value
    assert net["outcome_value"] == pytest.approx(outcome_value)
    assert net["net_value"] == pytest.approx(Decimal("1200") + outcome_value - Decimal("15") - Decimal("90"))
    assert net["outcome_value_low"] < net["outcome_value"] < net["outcome_value_high"]
    explain = net["explain"]
    assert explain["time_value"] == "time value = 20.0 h × $60.00/h = $1,200.00"
    assert explain["reviewer_cost"] == "reviewer cost = 1.50 h reviewing × $60.00/h = $90.00"
    assert "40 treated subjects" in explain["outcome_value"] and explain["net_value"].startswith(
        "net value = $1,200.00"
    )


def test_lift_summary_lists_only_use_cases_the_user_may_view(world, use_case, outsider):
    _dataset(use_case)
    assert [f["use_case"].slug for f in lift_summary(user=world.admin, start=START, end=END)] == ["renewals"]
    assert lift_summary(user=outsider, start=START, end=END) == []


def test_the_roi_page_shows_the_lift_with_its_formulas(client, world, use_case, outsider):
    _dataset(use_case)
    client.force_login(world.admin)

    body = client.get("/roi/", {"start": START.isoformat(), "end": END.isoformat()}).content.decode()

    assert 'data-lift-row="renewals"' in body
    assert "+29.7%" in body and "+7.9% to +51.5%" in body
    assert "40 / 34" in body and "outcome rate lift = 65.0% treated (26/40)" in body
    client.force_login(outsider)
    assert 'data-lift-row="renewals"' not in client.get("/roi/").content.decode()


def _messy(use_case):
    """Subjects the pointers must get right: triggered on several days (before and inside the range), in both
    groups on different days, with outcomes before, between and long after their triggers."""
    day = dt.timedelta(days=1)
    for i in range(12):
        subject = f"M-{i}"
        for n in range(i % 4):  # 0 to 3 recommendations, two days apart, the first possibly before START
            at = T0 + (2 * n - 6) * day + dt.timedelta(hours=i)
            Recommendation.objects.create(use_case=use_case, subject_key=subject, content={}, created_at=at)
        if i % 3 == 0:  # also held out once: inside the range for some, before it for others
            at = T0 + (i - 8) * day
            Run.objects.create(use_case=use_case, subject_key=subject, trigger="api", status="held_out", created_at=at)
        kinds = ["renewal_lost", "renewal_won", "ticket_resolved"]
        BusinessOutcome.objects.bulk_create(
            _outcome(use_case, subject, kinds[(i + k) % 3], T0 + (k * 5 - 4 + i % 2) * day) for k in range(i % 3 + 1)
        )


def test_the_lift_from_the_rollup_is_the_live_computation(world, use_case, django_assert_num_queries):
    _dataset(use_case)
    _messy(use_case)
    rollup_refresh()
    # An outcome that arrives late, backdated before outcomes already counted.
    BusinessOutcome.objects.bulk_create([_outcome(use_case, "T-39", "deal_won", T0 + dt.timedelta(hours=40))])
    rollup_refresh()

    ranges = [(START, END), (dt.date(2026, 1, 8), dt.date(2026, 1, 11)), (dt.date(2026, 1, 11), dt.date(2026, 2, 20))]
    for start, end in ranges:
        live = lift_groups_live(use_case=use_case, start=start, end=end, positive_kinds=DEFAULT_POSITIVE_KINDS)
        with django_assert_num_queries(1):  # one aggregate over the lift rows, whatever the number of subjects
            shown = use_case_lift(use_case=use_case, start=start, end=end, min_sample=5)
        for group in (False, True):
            rolled = lift_groups_rolled_up(use_case=use_case, start=start, end=end)[group]
            assert (rolled.subjects, rolled.wins, rolled.cycles.n) == (
                live[group].subjects,
                live[group].wins,
                live[group].cycles.n,
            )
        reference_rate = rate_difference(
            live[False].wins, live[False].subjects, live[True].wins, live[True].subjects, min_sample=5
        )
        reference_cycle = mean_difference(live[False].cycles, live[True].cycles, min_sample=5)
        assert shown["outcome_rate"] == reference_rate
        assert shown["cycle_hours"].explain == reference_cycle.explain
        assert shown["cycle_hours"].difference == pytest.approx(reference_cycle.difference)
        assert shown["cycle_hours"].low == pytest.approx(reference_cycle.low)
    # The whole range exercises both groups and the subjects left out: M-2, 7, 10, 11 treated (M-3 and M-6 are
    # held out in the range too), M-9 held out.
    whole = lift_groups_live(use_case=use_case, start=START, end=END, positive_kinds=DEFAULT_POSITIVE_KINDS)
    assert (whole[False].subjects, whole[True].subjects) == (40 + 4, 34 + 1)
