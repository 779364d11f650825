"""One view answers a page, its htmx fragment, and the whole page again for an htmx history restore."""

from django.urls import reverse


def test_a_history_restore_gets_the_whole_page(client, world):
    client.force_login(world.governance)
    url = reverse("workflows:use-case-list")
    fragment = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    restored = client.get(url, HTTP_HX_REQUEST="true", HTTP_HX_HISTORY_RESTORE_REQUEST="true").content.decode()
    assert "<html" not in fragment and 'id="use-case-table"' in fragment
    assert "<html" in restored and 'id="use-case-table"' in restored
