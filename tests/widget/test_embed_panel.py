"""The Embed panel on a use case page: who issues links, who names the origins that may frame them."""

import re

from apps.widget.models import WidgetToken

PANEL = "/widget/embed/churn-risk/"
ORIGINS = "/widget/embed/churn-risk/origins/"


def test_the_use_case_page_loads_the_panel(client, world):
    client.force_login(world.executive)
    body = client.get("/use-cases/churn-risk/").content.decode()
    assert f'hx-get="{PANEL}" hx-trigger="load"' in body


def test_an_integrator_issues_a_link_and_gets_the_url_and_the_snippet(client, world):
    client.force_login(world.integrator)
    panel = client.get(PANEL, HTTP_HX_REQUEST="true")
    assert panel.status_code == 200
    body = panel.content.decode()
    assert "Issue a link" in body and "Save origins" not in body  # no change_usecase
    assert "none yet" in body  # no origin may frame it

    response = client.post(PANEL, {"subject": " ACC-0004 ", "ttl_minutes": "15"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    body = response.content.decode()
    row = WidgetToken.objects.get()
    assert row.subject_key == "ACC-0004" and row.issued_by == world.integrator
    url = re.search(r'id="embed-url"[^>]*value="([^"]+)"', body).group(1)
    assert url.startswith("http://127.0.0.1:8000/widget/")
    assert "data-doorstep-widget=&quot;" + url in body  # the snippet, escaped in the textarea
    assert client.get(url.removeprefix("http://127.0.0.1:8000")).status_code == 200


def test_a_bad_subject_is_a_form_error(client, world):
    client.force_login(world.integrator)
    response = client.post(PANEL, {"subject": "", "ttl_minutes": "45"}, HTTP_HX_REQUEST="true")
    assert response.status_code == 200
    body = response.content.decode()
    assert "This field is required." in body and "is-invalid" in body
    assert "Select a valid choice." in body  # 45 is not offered
    assert not WidgetToken.objects.exists()


def test_without_run_usecase_no_link_is_issued(client, world):
    client.force_login(world.governance)  # view + change, no run
    body = client.get(PANEL, HTTP_HX_REQUEST="true").content.decode()
    assert "Save origins" in body and "Issue a link" not in body
    assert client.post(PANEL, {"subject": "ACC-1", "ttl_minutes": "30"}, HTTP_HX_REQUEST="true").status_code == 403
    assert client.post(PANEL, {"subject": "ACC-1", "ttl_minutes": "30"}).status_code == 403
    assert not WidgetToken.objects.exists()


def test_a_viewer_sees_no_panel(client, world):
    client.force_login(world.executive)  # view only
    assert client.get(PANEL, HTTP_HX_REQUEST="true").status_code == 204  # nothing swapped in
    assert client.get(PANEL).status_code == 403
    assert client.post(PANEL, {"subject": "ACC-1", "ttl_minutes": "30"}).status_code == 403
    assert client.post(ORIGINS, {"embed_origins": "https://a.example"}).status_code == 403
    assert not WidgetToken.objects.exists()
    world.churn.refresh_from_db()
    assert world.churn.embed_origins == []


def test_an_editor_names_the_origins(client, world):
    client.force_login(world.governance)
    response = client.post(
        ORIGINS,
        {"embed_origins": "https://CRM.example.com/\n\nhttp://127.0.0.1:8081\nhttps://crm.example.com"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    world.churn.refresh_from_db()
    assert world.churn.embed_origins == ["https://crm.example.com", "http://127.0.0.1:8081"]
    assert "<code>https://crm.example.com</code>" in response.content.decode()
    last = world.churn.history.first()
    assert last.history_user == world.governance and last.history_change_reason == "Widget embed origins changed"

    bad = client.post(ORIGINS, {"embed_origins": "https://ok.example\ncrm.example.com/path"}, HTTP_HX_REQUEST="true")
    assert bad.status_code == 200
    assert "&#x27;crm.example.com/path&#x27; is not an origin" in bad.content.decode()
    world.churn.refresh_from_db()
    assert world.churn.embed_origins == ["https://crm.example.com", "http://127.0.0.1:8081"]  # nothing half-saved


def test_an_integrator_may_not_change_the_origins(client, world):
    client.force_login(world.integrator)
    assert client.post(ORIGINS, {"embed_origins": "https://evil.example"}, HTTP_HX_REQUEST="true").status_code == 403
    world.churn.refresh_from_db()
    assert world.churn.embed_origins == []


def test_anonymous_is_sent_to_log_in(client, world):
    for response in (client.get(PANEL), client.post(PANEL), client.post(ORIGINS)):
        assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
