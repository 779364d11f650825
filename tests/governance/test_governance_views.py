"""Pages and fragments: the packs page (load: officers and admins), and a use case's checklist fragment
(view_usecase to see it, change_usecase to apply a pack or set a status) by page, htmx and guessed id."""

import json

import pytest
from django.template.loader import render_to_string
from django.urls import reverse

from apps.core.actors import Actor
from apps.governance.models import ControlPack, UseCaseControlItem
from apps.governance.services import use_case_checklist_apply

HTMX = {"HTTP_HX_REQUEST": "true"}
EU = "eu-ai-act-high-risk"


def _client(client, user):
    client.force_login(user)
    return client


def _checklist_url(use_case):
    return reverse("governance:use-case-checklist", args=[use_case.slug])


@pytest.fixture
def applied(world, eu_pack):
    use_case_checklist_apply(actor=Actor(user=world.governance), use_case=world.churn, pack=eu_pack)
    return {e.item.code: e for e in UseCaseControlItem.objects.filter(use_case=world.churn).select_related("item")}


def _set_url(use_case, entry):
    return reverse("governance:use-case-control-item-set", args=[use_case.slug, entry.pk])


def test_officer_loads_a_pack_from_the_packs_page(client, world):
    c = _client(client, world.governance)
    page = c.get(reverse("governance:pack-list")).content.decode()
    assert "EU AI Act: high-risk system obligations" in page and "Not loaded" in page
    assert reverse("governance:pack-load", args=[EU]) in page
    response = c.post(reverse("governance:pack-load", args=[EU]), **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body and 'id="pack-table"' in body
    assert "10 new, 0 updated" in body and "Human oversight" in body and "Loaded v2024-07-12" in body
    again = c.post(reverse("governance:pack-load", args=[EU]), **HTMX).content.decode()
    assert "0 new, 0 updated, 0 retired, 10 unchanged" in again
    # Without htmx: a message and back to the list.
    response = c.post(reverse("governance:pack-load", args=["nist-ai-rmf"]))
    assert response.status_code == 302 and response["Location"] == reverse("governance:pack-list")
    assert ControlPack.objects.count() == 2


def test_others_read_the_packs_but_cannot_load_them(client, world, outsider):
    for user in (world.executive, world.reviewer, outsider):
        c = _client(client, user)
        page = c.get(reverse("governance:pack-list")).content.decode()
        assert "EU AI Act" in page and reverse("governance:pack-load", args=[EU]) not in page
        for extra in ({}, HTMX):
            assert c.post(reverse("governance:pack-load", args=[EU]), **extra).status_code == 403
    assert not ControlPack.objects.exists()


def test_an_unknown_pack_is_404_and_load_is_post_only(client, world):
    c = _client(client, world.governance)
    assert c.post(reverse("governance:pack-load", args=["gdpr"]), **HTMX).status_code == 404
    assert c.get(reverse("governance:pack-load", args=[EU])).status_code == 405
    assert not ControlPack.objects.exists()


def test_the_use_case_page_include_loads_the_fragment_on_load(world):
    html = render_to_string("governance/_use_case_checklist.html", {"use_case": world.churn})
    assert f'hx-get="{_checklist_url(world.churn)}"' in html and 'hx-trigger="load"' in html
    assert 'id="checklist"' in html and 'hx-swap="outerHTML"' in html


def test_officer_applies_a_pack_and_sees_it_under_the_controls(client, world, eu_pack):
    c = _client(client, world.governance)
    fragment = c.get(_checklist_url(world.churn), **HTMX)
    body = fragment.content.decode()
    assert fragment.status_code == 200 and "<html" not in body and "HX-Request" in fragment["Vary"]
    assert "No obligations on this use case" in body and "Apply pack" in body
    response = c.post(
        reverse("governance:use-case-checklist-apply", args=[world.churn.slug]), {"pack": eu_pack.pk}, **HTMX
    )
    body = response.content.decode()
    assert response.status_code == 200 and "10 items of EU AI Act: high-risk system obligations added." in body
    assert 'data-control="access"' in body and "Art. 14" in body and "Human oversight" in body
    assert body.count('name="status"') == 10


def _group(body, key):
    return body.split(f'data-control="{key}"')[1].split("data-control=")[0]


def test_each_group_shows_whether_doorsteps_control_passes(client, world, applied):
    c = _client(client, world.governance)
    body = c.get(_checklist_url(world.churn), **HTMX).content.decode()
    assert "Control passes" in _group(body, "workflow") and "Art. 15" in _group(body, "workflow")
    world.churn.fallback_endpoint = None
    world.churn.save()
    body = c.get(_checklist_url(world.churn), **HTMX).content.decode()
    workflow = _group(body, "workflow")
    assert "Control fails" in workflow and "No fallback model endpoint" in workflow and "Art. 15" in workflow
    assert "Control passes" in _group(body, "access")


def test_apply_form_errors_are_shown_and_nothing_is_added(client, world, eu_pack):
    c = _client(client, world.governance)
    url = reverse("governance:use-case-checklist-apply", args=[world.churn.slug])
    response = c.post(url, {"pack": "999999"}, **HTMX)
    assert response.status_code == 200 and "Choose one of the loaded packs." in response.content.decode()
    assert c.post(url, {}).status_code == 400
    assert not UseCaseControlItem.objects.exists()


def test_full_page_without_htmx(client, world, applied):
    response = _client(client, world.executive).get(_checklist_url(world.churn))
    body = response.content.decode()
    assert response.status_code == 200 and "<html" in body and "Breadcrumb" in body and "Art. 9" in body


def test_officer_sets_a_status_and_sees_who(client, world, applied):
    c = _client(client, world.governance)
    entry = applied["Art. 10"]
    response = c.post(_set_url(world.churn, entry), {"status": "met", "note": "Accounts: SLA 1 day"}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and "Art. 10 is now met." in body
    assert "Accounts: SLA 1 day" in body and "by governance" in body and "1 met" in body
    entry.refresh_from_db()
    assert entry.status == "met" and entry.history.first().history_user == world.governance


def test_a_bad_status_change_is_explained_at_the_item(client, world, applied):
    c = _client(client, world.governance)
    entry = applied["Art. 13"]
    response = c.post(_set_url(world.churn, entry), {"status": "not_applicable", "note": ""}, **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and "Say in the note why this item does not apply." in body
    assert f'id="item{entry.pk}-note-error"' in body
    response = c.post(_set_url(world.churn, entry), {"status": "done"}, **HTMX)
    assert "Select a valid choice" in response.content.decode()
    entry.refresh_from_db()
    assert entry.status == "open" and entry.history.count() == 1


def test_a_viewer_sees_the_checklist_but_cannot_change_it(client, world, applied, eu_pack):
    c = _client(client, world.executive)
    body = c.get(_checklist_url(world.churn), **HTMX).content.decode()
    assert "Art. 14" in body and 'name="status"' not in body and "Apply pack" not in body
    entry = applied["Art. 14"]
    for extra in ({}, HTMX):
        assert c.post(_set_url(world.churn, entry), {"status": "met", "note": "x"}, **extra).status_code == 403
        apply_url = reverse("governance:use-case-checklist-apply", args=[world.churn.slug])
        assert c.post(apply_url, {"pack": eu_pack.pk}, **extra).status_code == 403
    entry.refresh_from_db()
    assert entry.status == "open" and entry.history.count() == 1


def test_without_view_everything_is_404_even_with_real_ids(client, world, applied, eu_pack, outsider, support_officer):
    entry = applied["Art. 14"]
    for user in (outsider, support_officer):
        c = _client(client, user)
        for extra in ({}, HTMX):
            assert c.get(_checklist_url(world.churn), **extra).status_code == 404
            assert c.post(_set_url(world.churn, entry), {"status": "met"}, **extra).status_code == 404
            apply_url = reverse("governance:use-case-checklist-apply", args=[world.churn.slug])
            assert c.post(apply_url, {"pack": eu_pack.pk}, **extra).status_code == 404
    entry.refresh_from_db()
    assert entry.status == "open" and UseCaseControlItem.objects.count() == 10


def test_an_item_of_another_use_case_is_404_under_this_one(client, world, applied, support_officer):
    """The support officer may change the replies use case, but not churn's item through its URL."""
    entry = applied["Art. 14"]
    c = _client(client, support_officer)
    assert c.get(_checklist_url(world.replies), **HTMX).status_code == 200
    url = reverse("governance:use-case-control-item-set", args=[world.replies.slug, entry.pk])
    assert c.post(url, {"status": "met", "note": "x"}, **HTMX).status_code == 404
    guessed = reverse("governance:use-case-control-item-set", args=[world.replies.slug, 999999])
    assert c.post(guessed, {"status": "met"}, **HTMX).status_code == 404
    entry.refresh_from_db()
    assert entry.status == "open"


def test_anonymous_is_sent_to_login(client, world):
    response = client.get(_checklist_url(world.churn), **HTMX)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")


def test_packs_page_says_when_a_newer_file_is_shipped_and_which_file_is_broken(client, world, tmp_path, monkeypatch):
    from apps.governance import pack_files
    from apps.governance.services import control_pack_load

    monkeypatch.setattr(pack_files, "PACK_DIR", tmp_path)
    item = {"code": "R1", "title": "Rule one", "text": "Plain words.", "control": "policy"}
    pack = {"slug": "house-rules", "name": "House rules", "source": "Ours", "version": "1", "items": [item]}
    (tmp_path / "house-rules.json").write_text(json.dumps(pack))
    control_pack_load(actor=Actor(user=world.governance), slug="house-rules")
    (tmp_path / "house-rules.json").write_text(json.dumps({**pack, "version": "2"}))
    (tmp_path / "broken.json").write_text("{not json")
    body = _client(client, world.governance).get(reverse("governance:pack-list")).content.decode()
    assert "Loaded v1" in body and "v2 available" in body
    assert "broken.json cannot be read" in body
    assert reverse("governance:pack-load", args=["broken"]) not in body
