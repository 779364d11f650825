"""The executive's ROI page in a real browser: charts drawn by the static script from the json_script data
(strict CSP, so a refused inline script or style shows up as a console error), filters through htmx, CSV."""

import csv
import datetime as dt
import io
import re
from decimal import Decimal

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from apps.core import clock
from apps.reporting.models import DailyRollup, RejectionRollup

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

CHARTS = ("funnel", "rates", "cycle", "cost", "reasons", "value")


@pytest.fixture
def rollups(world):
    today = timezone.localdate(clock.now())
    for use_case, per_day in ((world.churn, 10), (world.replies, 4)):
        DailyRollup.objects.bulk_create(
            DailyRollup(
                use_case=use_case,
                day=today - dt.timedelta(days=n),
                recommendations=per_day,
                delivered=per_day,
                shown=per_day,
                accepted=per_day // 2,
                acted_on=1,
                reviewed=2,
                edited=1,
                rejected=1,
                model_cost=Decimal("0.05"),
                review_seconds=120.0,
                cycle_seconds_total=600.0,
                cycle_count=per_day,
            )
            for n in range(30)
        )
    RejectionRollup.objects.create(use_case=world.churn, day=today, source="review", reason="Inaccurate", count=4)
    RejectionRollup.objects.create(use_case=world.replies, day=today, source="feedback", reason="Too late", count=2)


def test_executive_filters_the_roi_page_and_exports_a_chart(world, rollups, login, live_server):
    page = login(world.executive, world.password)
    expect(page).to_have_url(re.compile(r"/roi/"))
    for chart in CHARTS:
        expect(page.locator(f"#chart-{chart} .main-svg").first).to_be_attached(timeout=10_000)
    expect(page.locator("[data-figure=recommendations]")).to_have_text("420")  # 30 × (10 + 4)

    # A filter swaps only the charts region (htmx), and the charts are drawn again from the new data.
    with page.expect_response(lambda r: "/roi/" in r.url and r.request.headers.get("hx-request") == "true"):
        page.get_by_label("Use case", exact=True).select_option("churn-risk")
    expect(page.locator("[data-figure=recommendations]")).to_have_text("300")
    expect(page).to_have_url(re.compile(r"use_case=churn-risk"))
    for chart in CHARTS:
        expect(page.locator(f"#chart-{chart} .main-svg").first).to_be_attached(timeout=10_000)
    expect(page.locator("#chart-value .bars .point")).to_have_count(1)  # one use case left
    expect(page.locator("#chart-reasons .bars .point")).to_have_count(1)

    with page.expect_download() as download_info:
        page.get_by_role("link", name="Download the net value data (CSV)").click()
    download = download_info.value
    assert re.fullmatch(r"doorstep-roi-value-\d{8}-\d{8}\.csv", download.suggested_filename)
    rows = list(csv.DictReader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert len(rows) == 30 and {row["use_case"] for row in rows} == {"churn-risk"}

    # Back to every use case: htmx restores the previous state, and its charts are drawn again.
    page.go_back()
    expect(page.locator("[data-figure=recommendations]")).to_have_text("420")
    for chart in CHARTS:
        expect(page.locator(f"#chart-{chart} .main-svg").first).to_be_attached(timeout=10_000)
    expect(page.locator("#chart-value .bars .point")).to_have_count(2)
    assert page.errors == [], page.errors
