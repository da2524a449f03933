"""The tool playground in a real browser, against igris' full ASGI app and the demo upstream.

`live_server` serves Django only; the playground calls the proxy from the page, so igris runs
here as one ASGI application (dispatcher, proxy, Django) on a real socket, and the demo MCP
server (official SDK) on another.
"""

from __future__ import annotations

import json
import re

import pytest
from playwright.sync_api import expect

from governance.models import AgentSession, Anomaly, PolicyVersion
from governance.services.organizations import organization_update
from governance.services.servers import server_create
from governance.services.sessions import kill_lift, org_emergency_stop
from igris_project.demo.upstream import build_demo_app
from tests.conftest import PASSWORD
from tests.support import serving

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DENY_DELETES = [
    {
        "id": "no-deletes",
        "action": "deny",
        "message": "Deleting records needs a human",
        "match": {"tools": ["delete_*"]},
    },
    {"id": "allow-rest", "action": "allow"},
]
RELIST_ATTEMPTS = 40


@pytest.fixture
def igris_base(transactional_db):
    from governance import keys
    from igris_project.asgi import application

    keys.reset()
    with serving(application) as port:
        yield f"http://127.0.0.1:{port}"
    keys.reset()


@pytest.fixture
def demo_server(acme, alice):
    with serving(build_demo_app()) as port:
        yield server_create(
            org=acme,
            actor=alice,
            name="Demo tools",
            slug="demo",
            upstream_url=f"http://127.0.0.1:{port}/mcp",
        )


@pytest.fixture
def tab(browser, igris_base):
    context = browser.new_context(base_url=igris_base, viewport={"width": 1360, "height": 860})
    context.set_default_timeout(15_000)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    yield page
    context.close()
    assert not errors, errors


def _sign_in(tab, email: str) -> None:
    tab.goto("/accounts/login/")
    tab.fill("#id_login", email)
    tab.fill("#id_password", PASSWORD)
    tab.click("button:has-text('Sign in')")
    expect(tab.locator(".org-switcher .org-name")).to_have_text("Acme")


def _run(tab) -> None:
    tab.locator("[data-testid=pg-result]").evaluate("node => { node.hidden = true; }")
    tab.click("[data-testid=pg-run]")
    expect(tab.locator("[data-testid=pg-result]")).to_be_visible()


def test_the_playground_calls_tools_through_the_proxy_and_shows_a_denial(
    tab, shots, alice, acme, demo_server
):
    # Until a policy exists, the organisation's posture decides: allow everything.
    organization_update(org=acme, actor=alice, default_posture="allow")
    _sign_in(tab, "alice@acme.test")

    tab.click("nav >> text=Playground")
    expect(tab.locator("h1")).to_have_text("Tool playground")
    expect(tab.locator("#pg-server")).to_have_value("demo")
    expect(tab.locator(".pg-tool[data-tool=echo]")).to_be_visible()
    expect(tab.locator(".pg-tool[data-tool=delete_records]")).to_be_visible()
    expect(tab.locator("#pg-list-status")).to_have_text("7 tools visible to you")

    tab.click(".pg-tool[data-tool=echo]")
    expect(tab.locator("#pg-tool-title")).to_have_text("Echo (echo)")
    expect(tab.locator("label[for=pg-arg-text] .required-mark")).to_have_text("required")
    tab.fill("#pg-arg-text", "hello from the playground")
    _run(tab)
    expect(tab.locator("[data-testid=pg-http-status]")).to_have_text("HTTP 200")
    expect(tab.locator("[data-testid=pg-text]")).to_have_text("hello from the playground")
    expect(tab.locator("[data-testid=pg-is-error]")).to_have_text("isError: false")
    expect(tab.locator("[data-testid=pg-decision]")).to_have_count(0)

    # A tool with an object argument and structured output.
    tab.click(".pg-tool[data-tool=query_records]")
    tab.fill("#pg-arg-table", "customers")
    tab.fill("#pg-arg-where", '{"country": "US"}')
    _run(tab)
    structured = json.loads(tab.locator("[data-testid=pg-structured]").inner_text())
    assert structured["count"] == 2
    assert {row["name"] for row in structured["rows"]} == {"Grace Hopper", "Margaret Hamilton"}
    tab.screenshot(path=str(shots / "playground.png"), full_page=True)

    # Bad JSON in an object field is caught in the page, before any request.
    tab.fill("#pg-arg-where", "{oops")
    tab.click("[data-testid=pg-run]")
    expect(tab.locator("#pg-arg-where ~ .field-error")).to_contain_text("Not valid JSON")

    # The call was made as alice, through the proxy: it shows up as her session.
    session = AgentSession.objects.filter(org=acme, client_name="igris-playground").first()
    for _ in range(RELIST_ATTEMPTS):
        if session is not None:
            break
        tab.wait_for_timeout(250)  # the proxy flushes sessions to the database every second
        session = AgentSession.objects.filter(org=acme, client_name="igris-playground").first()
    assert session is not None and session.user == alice and session.era == "modern"

    # Publish a policy through the console.
    tab.click("nav >> text=Policies")
    broken = [{"id": "no-deletes", "action": "block", "match": {"tools": "delete_*"}}]
    tab.fill("#id_rules", json.dumps(broken, indent=2))
    tab.click("button:has-text('Save draft')")
    expect(tab.locator("[data-testid=rule-errors] li")).to_have_count(2)
    tab.locator("#editor").screenshot(path=str(shots / "policies-errors.png"))
    assert not PolicyVersion.objects.filter(org=acme).exists()
    tab.fill("#id_rules", json.dumps(DENY_DELETES, indent=2))
    tab.click("button:has-text('Save draft')")
    expect(tab.locator(".flash-success")).to_contain_text("Saved the draft (2 rules).")
    tab.fill("#publish-note", "no deletes from agents")
    tab.click("button:has-text('Publish as v1')")
    expect(tab.locator(".flash-success")).to_contain_text("Published version 1.")
    assert PolicyVersion.objects.get(org=acme).rules == DENY_DELETES

    tab.fill("#id_server", "demo")
    tab.fill("#id_name", "delete_records")
    tab.click("button:has-text('Evaluate')")
    expect(tab.locator("[data-testid=matched-rule]")).to_have_text("no-deletes")
    tab.evaluate("window.scrollTo(0, 0)")  # sticky header and sidebar sit at the top
    tab.screenshot(path=str(shots / "policies.png"), full_page=True)
    tab.click("[data-testid=versions-table] >> text=View")
    expect(tab.locator("h1")).to_contain_text("Version 1")
    expect(tab.locator("[data-testid=version-rules] .rule")).to_have_count(2)
    tab.screenshot(path=str(shots / "policy-version.png"), full_page=True)

    # The playground no longer lists delete_records once the proxy has the new version...
    tab.click("nav >> text=Playground")
    expect(tab.locator(".pg-tool[data-tool=echo]")).to_be_visible()
    for _ in range(RELIST_ATTEMPTS):
        if tab.locator(".pg-tool[data-tool=delete_records]").count() == 0:
            break
        tab.wait_for_timeout(250)
        tab.click("#pg-reload")
        expect(tab.locator(".pg-tool[data-tool=echo]")).to_be_visible()
    expect(tab.locator(".pg-tool[data-tool=delete_records]")).to_have_count(0)

    # ...and calling it by name shows the decision and the rule that made it.
    tab.click("#pg-other")
    tab.fill("[data-testid=pg-tool-name]", "delete_records")
    tab.fill("[data-testid=pg-tool-arguments]", '{"table": "customers", "where": {"id": 1}}')
    _run(tab)
    expect(tab.locator("[data-testid=pg-http-status]")).to_have_text("HTTP 200")
    expect(tab.locator("[data-testid=pg-decision-rule]")).to_have_text("no-deletes")
    expect(tab.locator("[data-testid=pg-decision]")).to_contain_text("policy v1")
    expect(tab.locator("[data-testid=pg-is-error]")).to_have_text("isError: true")
    expect(tab.locator("[data-testid=pg-text]")).to_contain_text("Deleting records needs a human")
    tab.screenshot(path=str(shots / "playground-denied.png"), full_page=True)

    # The denied delete never reached the upstream.
    tab.click(".pg-tool[data-tool=query_records]")
    tab.fill("#pg-arg-table", "customers")
    _run(tab)
    assert json.loads(tab.locator("[data-testid=pg-structured]").inner_text())["count"] == 4


def test_a_killed_playground_session_gets_a_jsonrpc_error(tab, alice, acme, demo_server):
    organization_update(org=acme, actor=alice, default_posture="allow")
    _sign_in(tab, "alice@acme.test")
    tab.goto("/playground/?server=demo")
    expect(tab.locator(".pg-tool[data-tool=echo]")).to_be_visible()

    org_emergency_stop(org=acme, actor=alice, reason="drill")
    tab.click(".pg-tool[data-tool=echo]")
    tab.fill("#pg-arg-text", "anyone there?")
    for _ in range(RELIST_ATTEMPTS):
        _run(tab)
        if tab.locator("[data-testid=pg-http-status]").inner_text() == "HTTP 403":
            break
        tab.wait_for_timeout(250)
    expect(tab.locator("[data-testid=pg-http-status]")).to_have_text("HTTP 403")
    expect(tab.locator("[data-testid=pg-rpc-error]")).to_contain_text(
        "This session was killed by an operator: drill"
    )
    kill_lift(org=acme, actor=alice, scope="org")


def test_the_sessions_and_anomalies_pages_render(tab, shots, alice, acme, demo_server, acme_key):
    for n in range(3):
        AgentSession.objects.create(
            id=f"igs_shot{n}",
            org=acme,
            server=demo_server,
            server_slug="demo",
            key=acme_key[0],
            era="legacy" if n else "modern",
            protocol_version="2025-11-25" if n else "2026-07-28",
            client_name="claude-code",
            client_version="2.1.0",
            state=["active", "suspended", "killed"][n],
            state_reason="" if n == 0 else "checking a spike",
            calls=40 + n,
            denied=n,
        )
    Anomaly.objects.create(
        org=acme,
        session_id="igs_shot0",
        server_slug="demo",
        kind="rate_spike",
        severity="high",
        tool="query_records",
        detail={"calls": 340, "window_s": 60, "baseline": 12},
    )
    _sign_in(tab, "alice@acme.test")
    tab.click("nav >> text=Sessions")
    expect(tab.locator("[data-testid=sessions-table] tbody tr")).to_have_count(3)
    row = tab.locator("tr[data-session-id=igs_shot0]")
    row.locator("summary:has-text('Stop')").click()
    row.locator("input[name=reason]").fill("runaway loop")
    tab.screenshot(path=str(shots / "sessions.png"), full_page=True)
    row.locator("button:has-text('Kill')").click()
    expect(tab.locator(".flash-success")).to_contain_text("Killed session igs_shot0")
    expect(tab.locator("tr[data-session-id=igs_shot0] .status")).to_have_text("killed")
    tab.click("tr[data-session-id=igs_shot1] >> text=igs_shot1")
    expect(tab.locator("[data-testid=session-details]")).to_contain_text("checking a spike")
    tab.click("button:has-text('Resume')")
    expect(tab.locator(".flash-success")).to_contain_text("Resumed session igs_shot1")
    expect(tab.locator("h1")).to_have_text("igs_shot1")
    tab.screenshot(path=str(shots / "session-detail.png"), full_page=True)

    tab.click("nav >> text=Anomalies")
    row = tab.locator("[data-testid=anomalies-table] tbody tr").first
    row.locator("button:has-text('Acknowledge')").click()
    expect(tab.locator(".flash-success")).to_contain_text("Acknowledged")
    row = tab.locator("[data-testid=anomalies-table] tbody tr").first
    row.locator("summary:has-text('Resolve')").click()
    row.locator("textarea[name=note]").fill("load test from the platform team")
    tab.screenshot(path=str(shots / "anomalies.png"), full_page=True)
    row.locator("button:has-text('Resolve')").click()
    expect(tab.locator(".flash-success")).to_contain_text("Resolved")
    assert Anomaly.objects.get(org=acme).status == "resolved"
    assert re.search("resolved", tab.locator("[data-testid=anomalies-table]").inner_text(), re.I)
