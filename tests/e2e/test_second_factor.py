"""The second factor in a real browser: enrolment at login (QR code shown under the strict CSP) and a code."""

import re

import pyotp
import pytest
from django.contrib.auth.models import Group
from django.test import override_settings
from playwright.sync_api import expect

from apps.permissions import roles
from tests.factories import UserFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@override_settings(DOORSTEP_TOTP_REQUIRED=True)
def test_a_governance_officer_enrols_and_logs_in_with_a_code(browser, live_server):
    user = UserFactory(username="gina")
    user.groups.add(Group.objects.get_or_create(name=roles.GOVERNANCE)[0])
    context = browser.new_context()
    page = context.new_page()
    errors = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    try:
        page.goto(f"{live_server.url}/accounts/login/")
        page.get_by_label("Username").fill("gina")
        page.get_by_label("Password").fill("demo-pass-123!")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Set up two-factor authentication")).to_be_visible()
        qr = page.get_by_alt_text("QR code for your authenticator app")
        expect(qr).to_be_visible()
        assert page.evaluate("img => img.naturalWidth > 0", qr.element_handle())  # the data: image loaded
        secret = page.get_by_test_id("totp-secret").inner_text()
        page.get_by_label("Authentication code").fill(pyotp.TOTP(secret).now())
        page.get_by_role("button", name="Turn on and log in").click()
        expect(page).not_to_have_url(re.compile(r"/accounts/"))
        expect(page.get_by_text("gina")).to_be_visible()
        assert errors == []
    finally:
        context.close()
