"""The console in a real browser: sign-up to a revoked API key, through the rendered pages."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from governance.models import ApiKey, Invitation, Organization
from tests.conftest import PASSWORD

pytestmark = pytest.mark.browser

CONFIRM_LINK = re.compile(r"https?://\S+/accounts/confirm-email/\S+/")


def test_a_new_user_signs_up_creates_an_org_invites_and_manages_a_key(page, mailoutbox, shots):
    page.goto("/accounts/signup/")
    page.fill("#id_email", "mallory@initech.test")
    page.fill("#id_password1", PASSWORD)
    page.fill("#id_password2", PASSWORD)
    page.click("button:has-text('Create account')")
    expect(page.locator("h1")).to_have_text("Check your e-mail")

    # The verification mail carries the confirmation link; opening it asks for one click.
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["mallory@initech.test"]
    link = CONFIRM_LINK.search(mailoutbox[0].body)
    assert link, mailoutbox[0].body
    page.goto(link.group(0))
    expect(page.locator("h1")).to_have_text("Confirm your e-mail address")
    page.click("button:has-text('Confirm')")

    # Signed in, without an organisation: the console asks for one.
    expect(page.locator("h1")).to_have_text("Create an organisation")
    page.fill("#id_name", "Initech")
    page.click("button:has-text('Create organisation')")
    expect(page.locator(".flash-success")).to_contain_text("Created Initech")
    expect(page.locator(".org-switcher .org-name")).to_have_text("Initech")
    assert Organization.objects.get(slug="initech").memberships.get().role == "owner"

    page.click("nav >> text=Members")
    page.fill("#id_email", "peter@initech.test")
    page.select_option("#id_role", "developer")
    page.click("button:has-text('Send invitation')")
    expect(page.locator(".flash-success")).to_contain_text("Invited peter@initech.test")
    expect(page.locator("[data-testid=invitations-table]")).to_contain_text("peter@initech.test")
    assert Invitation.objects.filter(email="peter@initech.test", accepted_at=None).count() == 1
    page.screenshot(path=str(shots / "members.png"), full_page=True)

    page.click("nav >> text=API keys")
    expect(page.locator(".empty")).to_contain_text("No API keys yet.")
    page.click("text=Create your first key")
    page.fill("#id_name", "laptop agent")
    page.check("input[name=scopes][value=read]")
    page.fill("#id_tags", "laptop, dev")
    page.click("button:has-text('Create key')")
    secret = page.locator("[data-testid=new-key]").inner_text().strip()
    assert secret.startswith("ig_")
    key = ApiKey.objects.get(name="laptop agent")
    assert secret.startswith(f"ig_{key.prefix}")
    assert sorted(key.scopes) == ["proxy", "read"]

    page.click("text=I have copied the key")
    row = page.locator(f"tr[data-key-prefix='{key.prefix}']")
    expect(row.locator(".status")).to_have_text("active")
    assert secret not in page.content()
    page.screenshot(path=str(shots / "keys.png"), full_page=True)

    page.once("dialog", lambda dialog: dialog.accept())
    row.locator("button:has-text('Revoke')").click()
    expect(page.locator(".flash-success")).to_contain_text("Revoked laptop agent")
    expect(row.locator(".status")).to_have_text("revoked")
    key.refresh_from_db()
    assert key.revoked_at is not None


def test_signing_in_with_a_wrong_password_shows_an_error(page, alice, acme):
    page.goto("/accounts/login/")
    page.fill("#id_login", "alice@acme.test")
    page.fill("#id_password", "not-the-password")
    page.click("button:has-text('Sign in')")
    expect(page.locator(".alert-error")).to_contain_text("not correct")
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))

    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Sign in')")
    expect(page.locator("h1")).to_have_text("Acme")
