"""The widget page: what a link shows, what its buttons record, and what it refuses."""

import datetime as dt
import re
import time
from unittest import mock
from urllib.parse import urlsplit

import pytest
from django.contrib.auth.models import Group
from django.contrib.staticfiles import finders
from django.test import Client

from apps.core import clock
from apps.permissions import roles
from apps.permissions.services import object_permission_revoke
from apps.widget.models import WidgetToken
from apps.widget.tokens import form_token_make
from apps.workflows.events import chain_verify
from apps.workflows.models import Recommendation, RecommendationEvent


def _path(link) -> str:
    return urlsplit(link.url).path


def _form_token(response) -> str:
    match = re.search(r'name="form_token" value="([^"]+)"', response.content.decode())
    assert match, response.content.decode()
    return match.group(1)


def _feedback(recommendation):
    return list(
        recommendation.events.filter(
            type__in=["shown", "accepted", "feedback_edited", "feedback_rejected"]
        ).values_list("type", flat=True)
    )


def test_shows_the_latest_passed_output_and_never_a_held_one(client, world, released, queued_recommendation, link):
    released(text="Older advice.")
    latest = released(text="Call the sponsor before the renewal date.")
    queued_recommendation(text="Offer a 20% renewal discount.", subject_key="ACC-0001")  # newer, but in review
    released(subject_key="ACC-0002", text="Another account's advice.")

    response = client.get(_path(link()))

    assert response.status_code == 200
    body = response.content.decode()
    assert "Call the sponsor before the renewal date." in body
    assert "Older advice." not in body and "20% renewal discount" not in body and "Another account" not in body
    for button in ("Accept", "Edit", "Reject"):
        assert f">{button}<" in body
    assert latest.events.filter(type="shown").count() == 0  # the browser records it once rendered


def test_no_passed_output_yet(client, world, queued_recommendation, link):
    queued_recommendation(subject_key="ACC-0001")
    blocked = Recommendation.objects.create(
        use_case=world.churn, subject_key="ACC-0001", content={"text": "Blocked text."}, status="blocked"
    )
    response = client.get(_path(link()))
    assert response.status_code == 200
    assert "No recommendation yet." in response.content.decode()
    assert "Blocked text." not in response.content.decode()
    assert "form_token" not in response.content.decode()
    assert blocked.events.count() == 0


def test_frame_ancestors_are_the_use_case_origins_and_nothing_else(client, world, released, link):
    released()
    url = _path(link())
    response = client.get(url)
    assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert "X-Frame-Options" not in response  # the CSP decides; DENY would refuse every origin

    world.churn.embed_origins = ["https://crm.example.com", "http://127.0.0.1:8081", "https://x.com; script-src *"]
    world.churn.save()
    response = client.get(url)
    csp = response["Content-Security-Policy"]
    assert "frame-ancestors https://crm.example.com http://127.0.0.1:8081;" in csp
    assert "script-src *" not in csp  # a malformed entry never reaches the header
    assert 'data-parent-origins="https://crm.example.com http://127.0.0.1:8081"' in response.content.decode()

    other = client.get("/accounts/login/")
    assert "frame-ancestors 'none'" in other["Content-Security-Policy"]
    assert other["X-Frame-Options"] == "DENY"


def test_shown_is_recorded_once_per_output_and_link(client, world, released, link):
    recommendation = released()
    url = _path(link())
    token = _form_token(client.get(url))
    for _ in range(2):
        response = client.post(url, {"form_token": token, "action": "shown"}, HTTP_HX_REQUEST="true")
        assert response.status_code == 204
    assert _feedback(recommendation) == ["shown"]
    event = recommendation.events.get(type="shown")
    assert event.actor_user == world.integrator
    assert event.payload["via"] == "widget" and event.payload["subject"] == "ACC-0001"

    second_link = _path(link())
    client.post(second_link, {"form_token": _form_token(client.get(second_link)), "action": "shown"})
    assert _feedback(recommendation) == ["shown", "shown"]  # another link, another showing


def test_accept_records_once_and_then_the_widget_says_so(client, world, released, link):
    recommendation = released()
    url = _path(link())
    token = _form_token(client.get(url))

    first = client.post(url, {"form_token": token, "action": "accept"}, HTTP_HX_REQUEST="true")
    double_click = client.post(url, {"form_token": token, "action": "accept"}, HTTP_HX_REQUEST="true")

    assert first.status_code == 200 and double_click.status_code == 200
    assert "Recorded: accepted." in first.content.decode()
    assert "<html" not in first.content.decode()  # the htmx fragment only
    assert "frame-ancestors 'none'" in first["Content-Security-Policy"]
    assert _feedback(recommendation) == ["accepted"]
    assert "Recorded: accepted." in client.get(url).content.decode()  # reopening keeps the answer

    # One decision per output: a reject after the accept is refused, not counted.
    response = client.post(url, {"form_token": token, "action": "reject", "reason": "x"}, HTTP_HX_REQUEST="true")
    assert "Already recorded here: accepted." in response.content.decode()
    assert _feedback(recommendation) == ["accepted"]


def test_accept_without_javascript_redirects_back_to_the_widget(client, world, released, link):
    recommendation = released()
    url = _path(link())
    response = client.post(url, {"form_token": _form_token(client.get(url)), "action": "accept"})
    assert response.status_code == 302 and response["Location"] == url
    assert _feedback(recommendation) == ["accepted"]


def test_edit_records_the_text_and_its_diff(client, world, released, link):
    recommendation = released(text="Schedule a check-in with the sponsor.")
    url = _path(link())
    token = _form_token(client.get(url))

    empty = client.post(url, {"form_token": token, "action": "edit", "text": "  "}, HTTP_HX_REQUEST="true")
    assert empty.status_code == 200 and "Write the text you would use." in empty.content.decode()
    assert " open>" in empty.content.decode()  # the edit form stays open with its error
    unchanged = client.post(
        url, {"form_token": token, "action": "edit", "text": recommendation.text}, HTTP_HX_REQUEST="true"
    )
    assert "The text is unchanged" in unchanged.content.decode()
    assert _feedback(recommendation) == []

    edited = "Schedule a check-in with the sponsor and the CFO."
    response = client.post(url, {"form_token": token, "action": "edit", "text": edited}, HTTP_HX_REQUEST="true")
    assert "Recorded: edited by user." in response.content.decode()
    event = recommendation.events.get(type="feedback_edited")
    assert event.payload["text"] == edited
    assert "-Schedule a check-in with the sponsor." in event.payload["diff"]
    assert "+Schedule a check-in with the sponsor and the CFO." in event.payload["diff"]


def test_reject_needs_a_reason(client, world, released, link):
    recommendation = released()
    url = _path(link())
    token = _form_token(client.get(url))
    response = client.post(url, {"form_token": token, "action": "reject", "reason": ""}, HTTP_HX_REQUEST="true")
    assert "Say why, so the team can improve it." in response.content.decode()
    assert _feedback(recommendation) == []
    client.post(url, {"form_token": token, "action": "reject", "reason": "Sponsor left the company"})
    assert recommendation.events.get(type="feedback_rejected").payload["reason"] == "Sponsor left the company"


def test_feedback_goes_to_the_output_shown_even_when_a_newer_one_arrives(client, world, released, link):
    shown = released(text="First advice.")
    url = _path(link())
    token = _form_token(client.get(url))
    newer = released(text="Second advice.")
    response = client.post(url, {"form_token": token, "action": "accept"}, HTTP_HX_REQUEST="true")
    assert "First advice." in response.content.decode()
    assert _feedback(shown) == ["accepted"] and _feedback(newer) == []


@pytest.mark.parametrize(
    "mangle",
    [
        lambda token: token[:-1] + ("A" if token[-1] != "A" else "B"),  # signature altered
        lambda token: "x" + token,  # nonce altered
        lambda token: "not-a-token",
    ],
)
def test_a_tampered_link_shows_and_records_nothing(client, world, released, link, mangle):
    recommendation = released()
    url = _path(link())
    token = _form_token(client.get(url))
    tampered = url.replace(url.split("/")[2], mangle(url.split("/")[2]))
    for response in (client.get(tampered), client.post(tampered, {"form_token": token, "action": "accept"})):
        assert response.status_code == 403
        assert "This link is not valid." in response.content.decode()
        assert recommendation.text not in response.content.decode()
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"]
    assert _feedback(recommendation) == []


def test_an_expired_link_is_refused(client, world, released, link):
    recommendation = released()
    world.churn.embed_origins = ["https://crm.example.com"]
    world.churn.save()
    issued = link(ttl=dt.timedelta(minutes=15))
    url = _path(issued)
    token = _form_token(client.get(url))
    with clock.simulated(issued.expires_at + dt.timedelta(seconds=1)):
        for response in (client.get(url), client.post(url, {"form_token": token, "action": "accept"})):
            assert response.status_code == 403
            assert "This link has expired." in response.content.decode()
            # The link was genuine: its host app may show the message in the frame.
            assert "frame-ancestors https://crm.example.com;" in response["Content-Security-Policy"]
        # A button pressed in a page left open too long: htmx swaps only a 200, so the message comes as one.
        pressed = client.post(url, {"form_token": token, "action": "accept"}, HTTP_HX_REQUEST="true")
        assert pressed.status_code == 200
        assert pressed.content.decode().lstrip().startswith('<section id="widget-body"')
        assert "This link has expired." in pressed.content.decode()
    assert _feedback(recommendation) == []


def test_no_link_outlives_the_longest_ttl_on_the_signers_clock(client, world, released, link):
    released()
    url = _path(link(ttl=dt.timedelta(minutes=60)))
    real_time = time.time
    with mock.patch("django.core.signing.time.time", lambda: real_time() + 61 * 60):
        response = client.get(url)
    assert response.status_code == 403 and "This link has expired." in response.content.decode()


def test_a_link_stops_when_its_issuer_loses_the_permission(client, world, released, link):
    recommendation = released()
    url = _path(link())
    token = _form_token(client.get(url))
    object_permission_revoke(group=Group.objects.get(name=roles.INTEGRATOR), codename="run_usecase", obj=world.churn)
    for response in (client.get(url), client.post(url, {"form_token": token, "action": "accept"})):
        assert response.status_code == 403
        assert "withdrawn" in response.content.decode()
    assert _feedback(recommendation) == []


def test_a_link_never_reaches_another_subject(client, world, released, link):
    mine = released(subject_key="ACC-0001")
    theirs = released(subject_key="ACC-0002", text="Confidential advice for another account.")
    issued = link(subject_key="ACC-0001")
    url = _path(issued)
    # Even a correctly signed form token naming another subject's output (say, a leaked secret key) is refused.
    forged = form_token_make(widget_token_id=issued.widget_token.pk, recommendation_id=theirs.pk)
    response = client.post(url, {"form_token": forged, "action": "accept"})
    assert response.status_code == 404
    assert theirs.text not in response.content.decode()
    # A form token rendered for another link (of the other subject) does not fit this link.
    other_url = _path(link(subject_key="ACC-0002"))
    other_token = _form_token(client.get(other_url))
    response = client.post(url, {"form_token": other_token, "action": "accept"})
    assert response.status_code == 403
    assert "This form does not belong to this link." in response.content.decode()
    assert _feedback(mine) == [] and _feedback(theirs) == []


def test_a_post_without_a_form_token_records_nothing(client, world, released, link):
    recommendation = released()
    url = _path(link())
    assert client.post(url, {"action": "accept"}).status_code == 403
    assert client.post(url, {"form_token": "garbage", "action": "accept"}).status_code == 403
    assert _feedback(recommendation) == []


def test_the_widget_works_without_a_session_or_csrf_cookie(world, released, link):
    recommendation = released()
    client = Client(enforce_csrf_checks=True)  # a third-party iframe sends no cookies
    url = _path(link())
    response = client.post(url, {"form_token": _form_token(client.get(url)), "action": "accept"})
    assert response.status_code == 302
    assert _feedback(recommendation) == ["accepted"]


def test_every_issue_is_on_record(world, link):
    issued = link(subject_key="ACC-0007", ttl=dt.timedelta(minutes=20))
    row = WidgetToken.objects.get(pk=issued.widget_token.pk)
    assert (row.use_case, row.subject_key, row.issued_by, row.issued_by_label) == (
        world.churn,
        "ACC-0007",
        world.integrator,
        "integrator",
    )
    assert row.expires_at - row.issued_at == dt.timedelta(minutes=20)
    assert row.nonce not in issued.url.split(":")[-1]  # the signature is not the nonce
    assert issued.url.startswith("http://127.0.0.1:8000/widget/")
    assert f'data-doorstep-widget="{issued.url}"' in issued.snippet
    assert 'src="http://127.0.0.1:8000/static/widget/embed.js"' in issued.snippet


def test_static_files_the_widget_needs_exist():
    for path in ("widget/embed.js", "widget/widget.js", "widget/widget.css", "vendor/htmx.org/dist/htmx.min.js"):
        assert finders.find(path), path


def test_events_are_on_the_recommendations_chain(client, world, released, link):
    recommendation = released()
    url = _path(link())
    client.post(url, {"form_token": _form_token(client.get(url)), "action": "accept"})
    assert chain_verify(recommendation) is None
    assert RecommendationEvent.objects.filter(external_id__startswith="widget:").count() == 1
