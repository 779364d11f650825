"""The widget in a real browser: a page served from another local port frames it with the snippet."""

import re
import time

import pytest
from playwright.sync_api import expect

from apps.core.actors import Actor
from apps.widget.services import widget_token_issue
from apps.workflows.models import RecommendationEvent
from apps.workflows.services import Draft, recommendation_submit
from standins.server import Response, StandIn

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Northwind CRM</title></head>
<body><h1>Account {subject}</h1>{snippet}<p>Account notes</p></body></html>"""


@pytest.fixture
def host_app():
    """Another web app, on its own port: serves the pages the test puts in `state["pages"]`."""

    def page(standin, request):
        html = standin.state["pages"].get(request.path)
        if html is None:
            return Response(404, "not found", {"Content-Type": "text/plain"})
        return Response(200, html, {"Content-Type": "text/html; charset=utf-8"})

    with StandIn([("GET", r"/.*", page)]) as server:
        server.state["pages"] = {"/favicon.ico": ""}
        yield server


@pytest.fixture
def widget_world(world, settings, live_server):
    settings.DOORSTEP_BASE_URL = live_server.url
    (recommendation,) = recommendation_submit(
        actor=Actor(user=world.integrator),
        use_case=world.churn,
        drafts=[
            Draft(
                subject_key="ACC-0001",
                content={"text": "Call the sponsor before the renewal date."},
                confidence=0.95,
                proposed_action={"type": "crm_task", "discount_pct": 0},
            )
        ],
    )
    recommendation.refresh_from_db()
    assert recommendation.status == "delivered"
    world.recommendation = recommendation
    return world


def _events(recommendation, type, *, at_least=0, timeout=5.0):
    deadline = time.monotonic() + timeout
    while True:
        count = RecommendationEvent.objects.filter(recommendation=recommendation, type=type).count()
        if count >= at_least or time.monotonic() > deadline:
            return count
        time.sleep(0.05)


def _fits(page, frame):
    """The iframe's height follows the widget's content (postMessage from the widget to embed.js)."""
    content = frame.evaluate("Math.ceil(document.body.getBoundingClientRect().height)")
    expect(page.locator("iframe[data-doorstep-frame]")).to_have_attribute("style", re.compile(rf"height: {content}px"))


def test_an_allowed_web_app_embeds_the_widget_and_the_user_accepts(widget_world, host_app, login, live_server):
    world, recommendation = widget_world, widget_world.recommendation
    world.churn.embed_origins = [host_app.url]
    world.churn.save()

    # The integrator issues a link for the account in the use case's Embed panel and copies the snippet.
    admin_page = login(world.integrator, world.password)
    admin_page.goto(f"{live_server.url}/use-cases/churn-risk/")
    admin_page.get_by_label("Subject").fill("ACC-0001")
    admin_page.get_by_role("button", name="Issue a link").click()
    snippet = admin_page.locator("#embed-snippet").input_value(timeout=10_000)
    assert f'src="{live_server.url}/static/widget/embed.js"' in snippet
    assert admin_page.errors == [], admin_page.errors

    host_app.state["pages"]["/accounts/ACC-0001"] = HOST_PAGE.format(subject="ACC-0001", snippet=snippet)
    page = admin_page.context.browser.new_page()
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{host_app.url}/accounts/ACC-0001")

    widget = page.frame_locator("iframe[data-doorstep-frame]")
    expect(widget.locator("[data-widget-text]")).to_have_text(
        "Call the sponsor before the renewal date.", timeout=10_000
    )
    frame = next(f for f in page.frames if f.url.startswith(f"{live_server.url}/widget/"))
    assert _events(recommendation, "shown", at_least=1) == 1
    _fits(page, frame)

    widget.get_by_role("button", name="Accept").click()
    expect(widget.get_by_text("Recorded: accepted. Thank you.")).to_be_visible(timeout=10_000)
    assert _events(recommendation, "accepted", at_least=1) == 1
    accepted = recommendation.events.get(type="accepted")
    assert accepted.actor_user == world.integrator and accepted.payload["via"] == "widget"
    _fits(page, frame)  # smaller now that the buttons are gone

    page.reload()  # reopening: still answered, shown counted once for this link
    expect(widget.get_by_text("Recorded: accepted. Thank you.")).to_be_visible(timeout=10_000)
    assert _events(recommendation, "shown") == 1
    assert errors == [], errors
    page.close()


def test_the_user_edits_the_text_inside_the_frame(widget_world, host_app, browser):
    world, recommendation = widget_world, widget_world.recommendation
    world.churn.embed_origins = [host_app.url]
    world.churn.save()
    link = widget_token_issue(actor=Actor(user=world.integrator), use_case=world.churn, subject_key="ACC-0001")
    host_app.state["pages"]["/accounts/ACC-0001"] = HOST_PAGE.format(subject="ACC-0001", snippet=link.snippet)

    context = browser.new_context()
    page = context.new_page()
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    page.goto(f"{host_app.url}/accounts/ACC-0001")
    widget = page.frame_locator("iframe[data-doorstep-frame]")
    widget.get_by_text("Edit", exact=True).click()
    widget.get_by_label("Your version").fill("Call the sponsor and the CFO before the renewal date.")
    widget.get_by_role("button", name="Save my version").click()
    expect(widget.get_by_text("Recorded: edited by user. Thank you.")).to_be_visible(timeout=10_000)
    assert _events(recommendation, "feedback_edited", at_least=1) == 1
    edited = recommendation.events.get(type="feedback_edited")
    assert edited.payload["text"] == "Call the sponsor and the CFO before the renewal date."
    assert "+Call the sponsor and the CFO" in edited.payload["diff"]
    assert errors == [], errors
    context.close()


def test_a_web_app_not_allowed_cannot_frame_the_widget(widget_world, host_app, browser, live_server):
    world, recommendation = widget_world, widget_world.recommendation
    world.churn.embed_origins = ["http://127.0.0.1:1"]  # same host, another port: another origin
    world.churn.save()
    link = widget_token_issue(actor=Actor(user=world.integrator), use_case=world.churn, subject_key="ACC-0001")
    host_app.state["pages"]["/accounts/ACC-0001"] = HOST_PAGE.format(subject="ACC-0001", snippet=link.snippet)

    context = browser.new_context()
    page = context.new_page()
    console = []
    page.on("console", lambda message: console.append(message.text))
    with page.expect_response(
        lambda response: response.url.startswith(f"{live_server.url}/widget/")
    ) as widget_response:
        page.goto(f"{host_app.url}/accounts/ACC-0001")
    csp = widget_response.value.headers["content-security-policy"]
    assert "frame-ancestors http://127.0.0.1:1;" in csp

    page.wait_for_timeout(1000)
    widget = page.frame_locator("iframe[data-doorstep-frame]")
    expect(widget.get_by_role("button", name="Accept")).to_have_count(0)
    assert not any(_has_widget(frame) for frame in page.frames)
    assert any("frame-ancestors" in text for text in console), console
    assert _events(recommendation, "shown", timeout=0) == 0  # the page never ran: nothing counted
    context.close()


def _has_widget(frame) -> bool:
    try:
        return frame.locator("#widget-body").count() > 0
    except Exception:  # noqa: BLE001 - an error page has no DOM to query
        return False
