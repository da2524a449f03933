"""The audit log in a real browser: sign in, filter and search the log, open a record with the
keyboard, and see the chain status of its range; screenshots at 1280 px and 390 px."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from tests.api.conftest import tool_call
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
WIDTHS = {"1280": {"width": 1280, "height": 800}, "390": {"width": 390, "height": 844}}


@pytest.fixture
def audited(acme):
    """acme's log: forty reads, a denied delete with its (masked) arguments, and a signed
    checkpoint after them, so the denied call's range is anchored at both ends."""
    from compliance.audit.writer import append_events
    from compliance.services import checkpoint_create

    reads = [
        tool_call(
            acme, ts=T0 + timedelta(seconds=n), tool="read_file", arguments={"path": f"/a/{n}"}
        )
        for n in range(40)
    ]
    denied = tool_call(
        acme,
        ts=T0 + timedelta(minutes=5),
        tool="delete_records",
        decision="deny",
        rule_id="deny-destructive",
        arguments={"table": "customers", "token": "[masked]"},
        latency_ms=3.25,
    )
    append_events([*reads, denied])
    checkpoint_create(org_id=acme.id)
    return acme


def _fits(page) -> bool:
    return page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")


def test_an_operator_filters_the_audit_log_and_opens_a_verified_record(page, alice, audited, shots):
    page.goto("/accounts/login/")
    page.fill("#id_login", "alice@acme.test")
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Sign in')")
    page.click("nav >> text=Audit log")
    expect(page.locator("h1")).to_have_text("Audit log")
    expect(page.locator("[data-testid=audit-table] tbody tr[data-seq='41']")).to_be_visible()

    page.fill("#f-q", "customers")
    page.select_option("#f-decision", "deny")
    page.click("button:has-text('Apply filters')")
    rows = page.locator("[data-testid=audit-table] tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("delete_records")
    expect(page.locator("#f-decision")).to_have_value("deny")
    expect(page).to_have_url(re.compile(r"q=customers.*decision=deny|decision=deny.*q=customers"))
    page.screenshot(path=str(shots / "audit-list-1280.png"), full_page=True)

    # Keyboard: the record's link takes focus with a visible outline and opens with Enter.
    page.keyboard.press("Shift")
    link = rows.first.locator("a").first
    link.focus()
    focus = link.evaluate(
        "el => el.matches(':focus-visible') && getComputedStyle(el).outlineStyle !== 'none'"
    )
    assert focus
    page.keyboard.press("Enter")

    expect(page.locator("h1")).to_contain_text("#41")
    chain = page.locator("[data-testid=chain-status]")
    expect(chain).to_have_attribute("data-status", "verified")
    expect(chain).to_contain_text("Verified.")
    expect(chain).to_contain_text("signed checkpoint at #41")
    expect(page.locator("[data-testid=audit-record]")).to_contain_text("deny-destructive")
    expect(page.locator("pre[aria-label=Arguments]")).to_contain_text('"token": "[masked]"')
    page.screenshot(path=str(shots / "audit-detail-1280.png"), full_page=True)
    detail_url = page.url

    page.set_viewport_size(WIDTHS["390"])
    page.go_back()
    expect(page.locator("[data-testid=audit-table] tbody tr")).to_have_count(1)
    assert _fits(page)
    page.screenshot(path=str(shots / "audit-list-390.png"), full_page=True)
    page.goto(detail_url)
    expect(page.locator("[data-testid=chain-status]")).to_be_visible()
    assert _fits(page)
    page.screenshot(path=str(shots / "audit-detail-390.png"), full_page=True)


def test_a_bad_filter_shows_a_form_error_in_the_browser(page, alice, audited):
    page.goto("/accounts/login/")
    page.fill("#id_login", "alice@acme.test")
    page.fill("#id_password", PASSWORD)
    page.click("button:has-text('Sign in')")
    response = page.goto("/audit/?decision=maybe&type=Tool_Call")
    assert response is not None and response.status == 400
    errors = page.locator("[data-testid=audit-errors]")
    expect(errors).to_contain_text('"maybe" is not a valid choice')
    expect(errors).to_contain_text('"Tool_Call" is not an event type')
