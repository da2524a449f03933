"""/observe/ in a real browser: a call made through the proxy with the official SDK client shows up
in the live feed without a reload, and a heat-map cell links to the audit rows behind it.

igris runs as its whole ASGI application with the embedded audit writer, so the call takes the
real path: proxy, outbox or stream, the writer (store, rollups, live publish), the per-process hub
and the console's websocket (/ws/events) that static/js/observe.js opens with the session cookie.
"""

from __future__ import annotations

import asyncio
import threading
from datetime import datetime
from urllib.parse import parse_qs, urlsplit

import pytest
from playwright.sync_api import expect

from compliance.models import AuditEvent
from governance.services.organizations import organization_update
from tests.browser.test_playground_browser import _sign_in
from tests.browser.test_playground_browser import demo_server as demo_server
from tests.proxy.conftest import mcp_client
from tests.support import serving

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Generous bounds for effects to show up on a shared machine; not timing assertions.
FEED_WAIT_MS = 20_000
STORED_WAIT_S = 20.0
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}


@pytest.fixture
def igris_base(transactional_db, settings):
    """igris with the audit writer in its own process, as `make run` has it without Redis."""
    from governance import keys
    from igris_project.asgi import application

    settings.IGRIS_EMBEDDED_AUDIT_WRITER = True
    keys.reset()
    with serving(application) as port:
        yield f"http://127.0.0.1:{port}"
    keys.reset()


@pytest.fixture
def tab(browser, igris_base):
    context = browser.new_context(base_url=igris_base, viewport=LAPTOP)
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors


def _call_echo(igris_base: str, token: str, text: str) -> None:
    """One tools/call with the SDK client, in a thread of its own: Playwright's sync API keeps
    an event loop in the test thread."""
    failure: list[BaseException] = []

    async def call() -> None:
        async with mcp_client(f"{igris_base}/proxy/demo/mcp", token) as client:
            result = await client.call_tool("echo", {"text": text})
            assert not result.is_error, result

    def run() -> None:
        try:
            asyncio.run(call())
        except BaseException as exc:  # handed to the test thread
            failure.append(exc)

    worker = threading.Thread(target=run)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "the SDK call did not finish"
    if failure:
        raise failure[0]


def _stored_call(acme) -> AuditEvent:
    for _ in range(int(STORED_WAIT_S / 0.25)):
        event = AuditEvent.objects.filter(org_id=acme.id, type="tool_call", tool="echo").first()
        if event is not None:
            return event
        threading.Event().wait(0.25)
    raise AssertionError("the call was never stored")


def test_a_proxied_call_appears_in_the_live_feed_and_its_heat_map_cell_links_to_its_audit_rows(
    tab, shots, igris_base, alice, acme, acme_key, demo_server
):
    organization_update(org=acme, actor=alice, default_posture="allow")
    _sign_in(tab, "alice@acme.test")
    tab.goto("/observe/")
    expect(tab.locator("h1")).to_have_text("Observe")
    expect(tab.locator("[data-testid=feed-status]")).to_have_text("Live", timeout=FEED_WAIT_MS)
    expect(tab.locator("#feed-rows tr")).to_have_count(0)
    # A reload would lose this marker: the row must come from the websocket, not a new page.
    tab.evaluate("window.__observeLoaded = true")

    _call_echo(igris_base, acme_key[1], "watched live")

    row = tab.locator("#feed-rows tr").first
    expect(row).to_be_visible(timeout=FEED_WAIT_MS)
    assert tab.evaluate("window.__observeLoaded") is True
    stored = _stored_call(acme)
    expect(tab.locator("#feed-rows tr")).to_have_count(1)
    cells = row.locator("td")
    expect(cells.nth(1)).to_have_text("demo")
    expect(cells.nth(2)).to_have_text("echo")
    expect(cells.nth(3)).to_contain_text("acme agents")
    expect(cells.nth(4)).to_have_text("allow")
    expect(cells.nth(5)).to_have_text(f"{stored.latency_ms:.1f} ms")
    expect(cells.nth(6).locator("a")).to_have_attribute("href", f"/audit/{stored.seq}/")
    expect(row).to_have_attribute("data-seq", str(stored.seq))

    # The writer added the call to the rollups in the same transaction: a fresh page shows it in
    # the counters and in the heat map (servers by time), in the cell of the call's minute.
    tab.goto("/observe/?window=15m")
    expect(tab.locator("[data-testid=count-calls]")).to_have_text("1")
    expect(tab.get_by_role("grid", name="heat map")).to_be_visible()
    cell = tab.locator("[data-testid=heat-cell][aria-label$=', 1 calls']")
    expect(cell).to_have_count(1)
    href = cell.get_attribute("href") or ""
    parts = urlsplit(href)
    query = {name: values[0] for name, values in parse_qs(parts.query).items()}
    assert parts.path == "/audit/"
    assert set(query) == {"server_slug", "since", "until"}
    assert query["server_slug"] == "demo"
    start, end = datetime.fromisoformat(query["since"]), datetime.fromisoformat(query["until"])
    assert start <= stored.ts < end
    assert (end - start).total_seconds() == 60
    assert start.second == 0 and start.microsecond == 0
    # The other cells of the row hold no calls and link to their own minutes.
    row_cells = tab.locator("[data-testid=heat-cell][aria-label^='demo, ']")
    expect(row_cells).to_have_count(15)
    expect(tab.locator("[data-testid=heat-cell][aria-label$=', 0 calls']")).to_have_count(14)

    cell.click()
    tab.wait_for_url("**/audit/?**")
    landed = urlsplit(tab.url)
    assert (landed.path, parse_qs(landed.query)) == ("/audit/", parse_qs(parts.query))
    # ...where the audit log lists exactly the call behind the cell.
    expect(tab.locator(f"a[href='/audit/{stored.seq}/']").first).to_be_visible()

    for name, viewport in (("1280px", LAPTOP), ("390px", PHONE)):
        tab.set_viewport_size(viewport)
        tab.goto("/observe/?window=15m")
        expect(tab.locator("#feed-rows tr")).to_have_count(1)
        expect(tab.locator("[data-testid=feed-status]")).to_have_text("Live")
        overflow = tab.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0, f"/observe/ scrolls sideways by {overflow} px at {name}"
        tab.screenshot(path=str(shots / f"observe-{name}.png"), full_page=True)
