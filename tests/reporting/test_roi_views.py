import csv
import datetime as dt
import io
import json
import re
from decimal import Decimal

import pytest
from django.urls import reverse

from apps.core import clock
from apps.reporting.models import DailyRollup
from apps.reporting.selectors import roi_summary

pytestmark = pytest.mark.django_db

TODAY = dt.date(2025, 5, 31)
NOW = dt.datetime(2025, 5, 31, 12, tzinfo=dt.UTC)
ROI = reverse("reporting:roi")
EXPORT = reverse("reporting:roi-export")


@pytest.fixture
def rollups(world):
    """Known figures: churn 90 days of activity, replies 3 days. Numbers chosen to be checked by hand."""
    rows = []
    for n in range(90):
        rows.append(
            DailyRollup(
                use_case=world.churn,
                day=TODAY - dt.timedelta(days=n),
                recommendations=10,
                delivered=8,
                shown=6,
                accepted=3,
                acted_on=1,
                reviewed=4,
                approved=2,
                edited=1,
                rejected=1,
                model_cost=Decimal("0.05"),
                review_seconds=360.0,
                cycle_seconds_total=1200.0,
                cycle_count=8,
            )
        )
    for n in range(3):
        rows.append(
            DailyRollup(
                use_case=world.replies,
                day=TODAY - dt.timedelta(days=n),
                recommendations=4,
                delivered=4,
                shown=4,
                accepted=1,
                reviewed=2,
                rejected=1,
                blocked=1,
                model_cost=Decimal("0.01"),
                review_seconds=120.0,
                cycle_seconds_total=240.0,
                cycle_count=4,
            )
        )
    DailyRollup.objects.bulk_create(rows)
    # Outside the default 90 days: never counted.
    DailyRollup.objects.create(use_case=world.churn, day=TODAY - dt.timedelta(days=90), accepted=1000, shown=1000)


@pytest.fixture(autouse=True)
def frozen_clock():
    with clock.simulated(NOW):
        yield


def chart_data(response) -> dict:
    match = re.search(r'<script id="roi-data" type="application/json">(.*?)</script>', response.content.decode(), re.S)
    assert match, "json_script block missing"
    return json.loads(match.group(1))


def test_summary_figures_and_their_explanations(world, rollups):
    summary = roi_summary(user=world.executive, start=TODAY - dt.timedelta(days=89), end=TODAY)

    churn = next(f for f in summary["use_cases"] if f["use_case"] == world.churn)
    assert (churn["accepted"], churn["shown"], churn["reviewed"]) == (270, 540, 360)
    assert churn["acceptance_rate"] == pytest.approx(0.5)
    assert churn["override_rate"] == pytest.approx(0.5)
    assert churn["avg_cycle_minutes"] == pytest.approx(2.5) and churn["baseline_minutes"] == 25
    # 270 accepted × 25 min × $70/h = $7,875; 270 × $120 = $32,400; review 9 h × $70 = $630; model $4.50.
    assert churn["time_value"] == Decimal("7875")
    assert churn["reviewer_cost"] == Decimal("630")
    assert churn["model_cost"] == Decimal("4.50")
    assert churn["net_value"] == Decimal("7875") + Decimal("32400") - Decimal("4.50") - Decimal("630")
    assert churn["explain"]["net_value"] == (
        "net value = 270 accepted × 25 min × $70.00/h + 270 × $120.00 − $4.50 model − $630.00 review = $39,640.50"
    )
    assert churn["explain"]["acceptance_rate"] == "acceptance rate = 270 accepted / 540 shown = 50.0%"
    assert isinstance(summary["totals"]["net_value"], Decimal)

    # Totals and business units are sums of the per-use-case money, rates from summed counts.
    totals = summary["totals"]
    replies = next(f for f in summary["use_cases"] if f["use_case"] == world.replies)
    assert totals["net_value"] == churn["net_value"] + replies["net_value"]
    assert totals["acceptance_rate"] == pytest.approx(273 / 552)
    assert [unit["name"] for unit in summary["business_units"]] == ["Customer support", "Sales"]
    assert "summed over 2 use cases" in totals["explain"]["net_value"]

    charts = summary["charts"]
    assert len(charts["days"]) == 90 and charts["funnel"]["values"] == [912, 732, 552, 273, 90]
    assert charts["totals"]["acceptance_rate"][-1] == pytest.approx(4 / 10)
    replies_series = next(s for s in charts["use_cases"] if s["slug"] == "support-replies")
    assert replies_series["cycle_minutes"][:87] == [None] * 87 and replies_series["cycle_minutes"][-1] == 1.0


def test_roi_page_for_the_executive(client, world, rollups):
    client.force_login(world.executive)
    response = client.get(ROI)

    assert response.status_code == 200
    html = response.content.decode()
    for chart in ("chart-funnel", "chart-rates", "chart-cycle", "chart-cost", "chart-value"):
        assert re.search(rf'<div class="chart" id="{chart}" role="img"\s+aria-label="[^"]+"', html), chart
    assert "plotly-strict.min.js" in html and "js/roi.js" in html
    assert html.index("plotly-strict.min.js") < html.index("js/roi.js")
    assert "<script>" not in html  # no inline script under the strict CSP
    data = chart_data(response)
    assert [uc["slug"] for uc in data["use_cases"]] == ["churn-risk", "support-replies"]
    assert "Churn risk on CRM accounts" in html and "$39,640.50" in html
    assert "How computed" in html
    assert response["Vary"] and "HX-Request" in response["Vary"]


def test_htmx_filter_returns_only_the_charts_region(client, world, rollups):
    client.force_login(world.executive)
    response = client.get(
        ROI, {"use_case": "support-replies", "start": "2025-05-01", "end": "2025-05-31"}, headers={"HX-Request": "true"}
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "<nav" not in html and "<html" not in html and 'id="roi-charts"' not in html
    data = chart_data(response)
    assert [uc["slug"] for uc in data["use_cases"]] == ["support-replies"]
    assert len(data["days"]) == 31 and data["funnel"]["values"][0] == 12


def test_invalid_filters_fall_back_to_the_defaults(client, world, rollups):
    client.force_login(world.executive)
    response = client.get(ROI, {"start": "2025-06-01", "end": "2025-05-01"})

    assert response.status_code == 200
    assert "The start date is after the end date." in response.content.decode()
    assert len(chart_data(response)["days"]) == 90


def test_outsider_sees_no_use_case_figures(client, world, rollups, outsider):
    client.force_login(outsider)
    response = client.get(ROI, {"use_case": "churn-risk"})

    assert response.status_code == 200
    html = response.content.decode()
    assert "Churn risk" not in html and "Suggested replies" not in html
    data = chart_data(response)
    assert data["use_cases"] == [] and data["funnel"]["values"] == [0, 0, 0, 0, 0]

    export = client.get(EXPORT)
    assert export.status_code == 200
    assert list(csv.reader(io.StringIO(export.content.decode())))[1:] == []


def test_reviewer_sees_only_the_use_case_granted_to_them(client, world, rollups):
    client.force_login(world.reviewer)  # churn reviewers may view churn only
    data = chart_data(client.get(ROI))
    assert [uc["slug"] for uc in data["use_cases"]] == ["churn-risk"]


def test_anonymous_is_sent_to_login(client):
    assert client.get(ROI).status_code == 302
    assert client.get(EXPORT).status_code == 302


def test_csv_export(client, world, rollups):
    client.force_login(world.executive)
    response = client.get(EXPORT, {"chart": "value", "start": "2025-05-29", "end": "2025-05-31"})

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == 'attachment; filename="doorstep-roi-value-20250529-20250531.csv"'
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert len(rows) == 6  # 3 days × 2 use cases
    churn_day = next(r for r in rows if r["use_case"] == "churn-risk" and r["day"] == "2025-05-31")
    # 3 accepted × 25 min × $70/h = 87.50; + 3 × 120; − 0.05 model − 0.1 h × $70 review = 440.45
    assert churn_day["time_value"] == "87.50" and churn_day["net_value"] == "440.45"

    everything = client.get(EXPORT)
    header = next(csv.reader(io.StringIO(everything.content.decode())))
    assert {"acceptance_rate", "override_rate", "avg_cycle_minutes", "cost_per_accepted"} <= set(header)
    assert client.get(EXPORT, {"chart": "nope"}).status_code == 400


def test_roi_page_queries_do_not_grow_with_the_range(client, world, rollups, django_assert_max_num_queries):
    client.force_login(world.executive)
    client.get(ROI)  # warm up (session, content types)
    with django_assert_max_num_queries(8) as short:
        client.get(ROI, {"start": "2025-05-25", "end": "2025-05-31"})
    with django_assert_max_num_queries(8) as long:
        client.get(ROI, {"start": "2023-06-01", "end": "2025-05-31"})
    assert len(long.captured_queries) == len(short.captured_queries)


@pytest.fixture
def rejections(world):
    from apps.reporting.models import RejectionRollup

    RejectionRollup.objects.bulk_create(
        [
            RejectionRollup(use_case=world.churn, day=TODAY, source="review", reason="Inaccurate", count=5),
            RejectionRollup(
                use_case=world.churn, day=TODAY - dt.timedelta(days=1), source="review", reason="Inaccurate", count=2
            ),
            RejectionRollup(use_case=world.replies, day=TODAY, source="feedback", reason="=Too late", count=3),
            # Outside the default 90 days: never counted.
            RejectionRollup(
                use_case=world.churn, day=TODAY - dt.timedelta(days=90), source="review", reason="Wrong tone", count=100
            ),
        ]
    )


def test_top_rejection_reasons_with_how_they_were_counted(client, world, rollups, rejections):
    client.force_login(world.executive)
    response = client.get(ROI)

    html = response.content.decode()
    assert "Top rejection reasons" in html and "Wrong tone" not in html
    assert "7 review verdicts rejecting with this reason, 2025-03-03 to 2025-05-31; share = 7 / 10" in html
    assert chart_data(response)["reasons"] == {
        "labels": ["Inaccurate (reviewer)", "=Too late (business user)"],
        "values": [7, 3],
    }

    export = client.get(EXPORT, {"chart": "reasons"})
    assert export["Content-Disposition"].startswith('attachment; filename="doorstep-roi-reasons-')
    rows = list(csv.DictReader(io.StringIO(export.content.decode())))
    assert [(r["source"], r["reason"], r["count"], r["share"]) for r in rows] == [
        ("review", "Inaccurate", "7", "0.7"),
        ("feedback", "'=Too late", "3", "0.3"),  # a spreadsheet would run it as a formula
    ]

    client.force_login(world.reviewer)  # churn only
    assert chart_data(client.get(ROI))["reasons"]["values"] == [7]
    assert [
        r["reason"] for r in csv.DictReader(io.StringIO(client.get(EXPORT, {"chart": "reasons"}).content.decode()))
    ] == ["Inaccurate"]


def test_page_works_without_the_lift_section(client, world, rollups, monkeypatch):
    from apps.reporting import views

    monkeypatch.setattr(views, "LIFT_TEMPLATE", "reporting/_no_such_section.html")
    client.force_login(world.executive)
    response = client.get(ROI)
    assert response.status_code == 200 and response.context["lift_template"] is None
