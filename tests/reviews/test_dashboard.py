"""The reviewer dashboard: figures per reviewer, use case and rule, over granted queues only."""

import datetime as dt
import re

import pytest
from django.contrib.auth.models import Group
from django.urls import reverse

from apps.core import clock
from apps.core.actors import Actor
from apps.permissions.services import object_permission_grant
from apps.reviews import services, stats
from apps.reviews.models import ReviewTask, ReviewVerdict
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


@pytest.fixture
def second(world):
    user = UserFactory(username="churn-reviewer-2")
    user.groups.add(world.churn_reviewers)
    return user


def _decide(user, task, decision="approve", seconds=10.0, **kwargs):
    if decision == "reject":
        kwargs.setdefault("reason_code", "inaccurate")
    if decision == "edit":
        kwargs.setdefault("edited_text", "A different text.")
    return services.review_task_decide(
        actor=Actor(user=user), task=task, decision=decision, seconds_spent=seconds, **kwargs
    )


@pytest.fixture
def figures(world, second, queued_recommendation):
    """Churn: the reviewer clears three items (10, 20, 60 s; one edit, one late), the second reviewer one
    reject; one consensus item agreed, one disputed. Support: one item decided (not granted to them)."""
    tasks = [queued_recommendation(world.churn, subject_key=f"ACC-{n:04d}").review_task for n in range(1, 8)]
    ReviewTask.objects.filter(pk=tasks[2].pk).update(due_at=clock.now() - dt.timedelta(minutes=1))
    _decide(world.reviewer, tasks[0], seconds=10)
    _decide(world.reviewer, tasks[1], "edit", seconds=20)
    _decide(world.reviewer, tasks[2], seconds=60)
    _decide(second, tasks[3], "reject", seconds=30)
    ReviewTask.objects.filter(pk__in=[tasks[4].pk, tasks[5].pk]).update(required_reviews=2)
    for task, second_decision in ((tasks[4], "approve"), (tasks[5], "reject")):
        _decide(world.reviewer, task, seconds=5)
        _decide(second, task, second_decision, seconds=5)
    support = queued_recommendation(world.replies).review_task
    _decide(world.support_lead, support, "reject")
    return tasks


def _row(html: str, attribute: str, name: str) -> str:
    match = re.search(rf'<tr {attribute}="{re.escape(name)}">(.*?)</tr>', html, re.S)
    assert match, f"no row {attribute}={name}"
    return match.group(1)


def _cell(row: str, name: str) -> str:
    return re.search(rf"data-{name}>\s*([^<]*?)\s*<", row).group(1)


def test_dashboard_figures_per_reviewer(client, world, second, figures):
    client.force_login(world.reviewer)

    html = client.get(reverse("reviews:dashboard")).content.decode()

    mine = _row(html, "data-reviewer", "reviewer")
    assert _cell(mine, "cleared") == "5"  # three single items and two consensus votes
    assert _cell(mine, "median") == "10.0"  # of 5, 5, 10, 20, 60
    assert _cell(mine, "sla-hit") == "80 %"  # one of five after its due time
    assert _cell(mine, "override") == "20 %"  # one edit
    theirs = _row(html, "data-reviewer", "churn-reviewer-2")
    assert _cell(theirs, "cleared") == "3" and _cell(theirs, "override") == "67 %"


def test_dashboard_figures_per_use_case_and_rule(client, world, figures):
    client.force_login(world.reviewer)

    html = client.get(reverse("reviews:dashboard")).content.decode()

    churn = _row(html, "data-use-case", world.churn.name)
    assert _cell(churn, "cleared") == "8"
    assert _cell(churn, "override") == "38 %"  # edit + reject + reject vote of 8
    assert _cell(churn, "decided") == "5"  # the disputed item waits for a lead
    assert _cell(churn, "sla-hit") == "80 %"
    assert _cell(churn, "agreement") == "50 %"
    assert re.search(r"data-agreement>\s*50 %", html)
    rule_name = figures[0].reasons[0]["name"]
    rule = _row(html, "data-rule", rule_name)
    assert _cell(rule, "cleared") == "8" and _cell(rule, "override") == "38 %"


def test_dashboard_shows_nothing_of_queues_not_granted(client, world, outsider, figures):
    client.force_login(world.reviewer)
    html = client.get(reverse("reviews:dashboard")).content.decode()
    assert world.replies.name not in html and "support-lead" not in html

    client.force_login(outsider)
    html = client.get(reverse("reviews:dashboard")).content.decode()
    assert "data-empty" in html and world.churn.name not in html and "data-reviewer" not in html

    client.force_login(world.support_lead)
    html = client.get(reverse("reviews:dashboard")).content.decode()
    assert world.churn.name not in html and 'data-reviewer="reviewer"' not in html
    assert _cell(_row(html, "data-reviewer", "support-lead"), "cleared") == "1"


def test_a_lead_without_the_review_grant_sees_the_queue_figures(client, world, figures):
    group = Group.objects.create(name="Churn leads")
    object_permission_grant(group=group, codename="lead_reviewqueue", obj=world.churn_queue)
    lead = UserFactory(username="churn-lead")
    lead.groups.add(group)
    client.force_login(lead)

    html = client.get(reverse("reviews:dashboard")).content.decode()

    assert _cell(_row(html, "data-reviewer", "reviewer"), "cleared") == "5"


def test_anonymous_users_are_sent_to_login(client):
    response = client.get(reverse("reviews:dashboard"))
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_the_date_range_filters_the_verdicts(client, world, figures):
    ReviewVerdict.objects.filter(reviewer=world.reviewer, seconds_spent=60).update(
        created_at=clock.now() - dt.timedelta(days=40)
    )
    client.force_login(world.reviewer)

    html = client.get(reverse("reviews:dashboard")).content.decode()
    assert _cell(_row(html, "data-reviewer", "reviewer"), "cleared") == "4"  # default: the last 30 days

    today = clock.now().date()
    params = {
        "since": (today - dt.timedelta(days=41)).isoformat(),
        "until": (today - dt.timedelta(days=39)).isoformat(),
    }
    html = client.get(reverse("reviews:dashboard"), params, **HTMX).content.decode()
    assert html.lstrip().startswith('<div id="dashboard-body"')
    assert _cell(_row(html, "data-reviewer", "reviewer"), "cleared") == "1"


def test_an_invalid_range_names_the_field_and_shows_the_default(client, world, figures):
    client.force_login(world.reviewer)

    response = client.get(reverse("reviews:dashboard"), {"since": "2026-05-02", "until": "2026-05-01"}, **HTMX)

    html = response.content.decode()
    assert response.status_code == 200
    assert "To: The end date is before the start date." in html
    assert _cell(_row(html, "data-reviewer", "reviewer"), "cleared") == "5"
    response = client.get(reverse("reviews:dashboard"), {"since": "not a date"})
    assert response.status_code == 200 and "From: Enter a valid date." in response.content.decode()


def test_dashboard_runs_a_bounded_number_of_queries(
    client, world, figures, queued_recommendation, django_assert_max_num_queries
):
    client.force_login(world.reviewer)
    client.get(reverse("reviews:dashboard"))  # warm the session and content types
    with django_assert_max_num_queries(10) as before:
        client.get(reverse("reviews:dashboard"))
    for n in range(8, 20):
        _decide(world.reviewer, queued_recommendation(world.churn, subject_key=f"ACC-{n:04d}").review_task)

    with django_assert_max_num_queries(len(before.captured_queries)):
        client.get(reverse("reviews:dashboard"))


def test_stats_median_matches_python(world, figures):
    since, until = clock.now() - dt.timedelta(days=1), clock.now() + dt.timedelta(days=1)
    stats._median_ready()

    rows = stats.reviewer_stats(queue_ids=[world.churn_queue.pk], since=since, until=until)

    assert {row["reviewer__username"]: row["median_seconds"] for row in rows} == {
        "reviewer": 10.0,
        "churn-reviewer-2": 5.0,
    }
