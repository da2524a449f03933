"""Every console page at a laptop's width (1280 px) and a phone's (390 px): nothing widens the page
and every button, link and field stays on screen.

The pages come from the console's URL configuration, so a new page fails
`test_every_console_page_is_in_the_layout_sweep` until it is added here. They are loaded with
data in every list (keys, servers, policy versions, sessions, anomalies, members, invitations,
ingest sources) and an organisation whose name is as long as the model allows, which is what made
buttons overflow before.

What counts as overflow:
- the page scrolls sideways (`document.documentElement.scrollWidth > window.innerWidth`);
- a button, link, field or menu toggle ends past the viewport's right edge or starts before its
  left edge, or is cut off by an ancestor that clips (a card's `overflow: hidden`);
- at 1280 px, also one that is only reachable by scrolling a table sideways (how the Revoke and
  Acknowledge actions were lost). At 390 px a wide table may scroll inside its own container, as
  long as that container itself fits the screen.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import expect

from compliance.observe.urls import urlpatterns as observe_urlpatterns
from governance.models import AgentSession, Anomaly, Organization, User
from igris_project.urls import CONSOLE_URLPATTERNS as urlpatterns
from tests.browser.test_playground_browser import demo_server as demo_server
from tests.browser.test_playground_browser import igris_base as igris_base
from tests.conftest import _user, login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
WIDTHS = {"1280px": LAPTOP, "390px": PHONE}

# As long a name as an organisation may have, with no spaces in its second half so nothing can
# wrap it there: the worst case for every place the console prints it.
NAME_MAX = Organization._meta.get_field("name").max_length
LONG_ORG_NAME = ("Acme Interplanetary Logistics " + "Autonomous-Agent-Operations-" * 5)[:NAME_MAX]

# Console routes that answer GET with a page, and the URL to load for each (with the arguments
# that show data rows). The dry run is a GET form: its page is loaded with a call evaluated.
DRY_RUN_QUERY = urlencode(
    {
        "policy": "draft",
        "method": "tools/call",
        "server": "customer-records-prod",
        "name": "delete_records_in_every_region_at_once",
        "arguments": json.dumps({"table": "customers", "where": "region = 'eu-west-1'"}),
        "key_tags": "ci, nightly",
        "role": "developer",
    }
)
PAGES: dict[str, Callable[[SimpleNamespace], str]] = {
    "home": lambda d: reverse("console:home"),
    "org_create": lambda d: reverse("console:org_create"),
    "org_settings": lambda d: reverse("console:org_settings"),
    "members": lambda d: reverse("console:members"),
    "keys": lambda d: reverse("console:keys"),
    "key_create": lambda d: reverse("console:key_create"),
    "ingest_sources": lambda d: reverse("console:ingest_sources"),
    "ingest_source_create": lambda d: reverse("console:ingest_source_create"),
    "servers": lambda d: reverse("console:servers"),
    "server_create": lambda d: reverse("console:server_create"),
    "server_edit": lambda d: reverse("console:server_edit", args=[d.server.id]),
    "policies": lambda d: reverse("console:policies"),
    "policy_dry_run": lambda d: f"{reverse('console:policy_dry_run')}?{DRY_RUN_QUERY}",
    "policy_versions": lambda d: reverse("console:policy_versions"),
    "policy_version": lambda d: reverse(
        "console:policy_version", args=[d.org.slug, d.rollback.number]
    ),
    "sessions": lambda d: reverse("console:sessions"),
    "session_detail": lambda d: reverse("console:session_detail", args=[d.session.id]),
    "anomalies": lambda d: reverse("console:anomalies"),
    "playground": lambda d: reverse("console:playground"),
    "invitation_accept": lambda d: reverse("console:invitation_accept", args=[d.invitation_token]),
    "audit": lambda d: reverse("console:audit"),
    "audit_detail": lambda d: reverse("console:audit_detail", args=[d.audit_seq]),
    "audit_event": lambda d: reverse("console:audit_event", args=[d.audit_event_id]),
    # The export answers a file; the page it answers to bad filters is what can overflow.
    "audit_export": lambda d: f"{reverse('console:audit_export')}?format=xlsx&decision=maybe",
}
# Pages outside the "console" namespace, by their full URL name; the dashboard with its heat map
# by servers and time and by agents and tools.
OTHER_PAGES: dict[str, Callable[[SimpleNamespace], str]] = {
    "observe:dashboard": lambda d: reverse("observe:dashboard"),
    "observe:dashboard agents by tools": lambda d: (
        f"{reverse('observe:dashboard')}?window=7d&rows=agents&cols=tools"
    ),
}
# Form targets: POST only. The pages some of them answer with (a new key's secret, a new ingest
# source's secret, form errors) are reached through their forms below.
FORM_TARGETS = {
    "org_switch",
    "org_delete",
    "member_invite",
    "member_leave",
    "member_role",
    "member_remove",
    "invitation_revoke",
    "key_revoke",
    "ingest_source_rotate",
    "ingest_source_delete",
    "server_delete",
    "server_circuit_reset",
    "policy_draft_save",
    "policy_publish",
    "policy_rollback",
    "sessions_stop",
    "sessions_lift",
    "session_kill",
    "session_suspend",
    "session_resume",
    "anomaly_acknowledge",
    "anomaly_resolve",
}
# Account pages (django-allauth) the console links to, and igris' own error page.
ACCOUNT_PAGES = ["account_email", "account_change_password", "account_logout"]
SIGNED_OUT_PAGES = ["account_login", "account_signup", "account_reset_password"]
MISSING_PAGE = "/no-such-page/"

# Runs in the page: returns the document's widths and every actionable element that is off
# screen or cut off. Elements that are not shown (in a closed menu, hidden) cannot be cut off.
MEASURE = """
(strict) => {
  const doc = document.documentElement;
  const right = doc.clientWidth;  // the viewport without a vertical scrollbar
  const px = Math.round;
  const offenders = [];
  const describe = (el) => {
    const text = (el.innerText || el.value || el.getAttribute('aria-label') || '').trim();
    const cls = typeof el.className === 'string' ? el.className.trim().split(/\\s+/)[0] : '';
    return `${el.tagName.toLowerCase()}${cls ? '.' + cls : ''} "${text.slice(0, 50)}"`;
  };
  const actionable = 'a[href], button, input:not([type=hidden]), select, textarea, summary';
  for (const el of document.querySelectorAll(actionable)) {
    const box = el.getBoundingClientRect();
    if (!el.checkVisibility({visibilityProperty: true}) || el.closest('.sr-only')) continue;
    if (box.width === 0 || box.height === 0) continue;
    let cut = null;
    let reachable = false;
    for (let up = el.parentElement; up && up !== doc && !cut && !reachable; up = up.parentElement) {
      const style = getComputedStyle(up);
      if (style.overflowX === 'visible') continue;
      const clip = up.getBoundingClientRect();
      const edge = clip.left + up.clientLeft + up.clientWidth;
      if (box.right <= edge + 1 && box.left >= clip.left - 1) continue;
      const scrolls = style.overflowX === 'auto' || style.overflowX === 'scroll';
      // A table scrolling inside its own container is fine on a phone, if the container fits.
      reachable = !strict && scrolls && clip.right <= right + 1 && clip.left >= -1;
      if (!reachable) cut = `${scrolls ? 'scrolled out of' : 'cut off by'} ${describe(up)}`;
    }
    if (!cut && !reachable && (box.right > right + 1 || box.left < -1)) cut = 'off screen';
    if (cut) offenders.push(`${describe(el)} at ${px(box.left)}..${px(box.right)} px: ${cut}`);
  }
  return {scrollWidth: doc.scrollWidth, innerWidth: window.innerWidth, offenders};
}
"""


# Opens (true) or closes (false) every dropdown menu and disclosure (raw JSON, a detector's
# detail) of the page; returns how many there are.
TOGGLE_MENUS = """
(open) => {
  const menus = document.querySelectorAll('details');
  menus.forEach((menu) => { menu.open = open; });
  return menus.length;
}
"""


def _measure(tab, *, strict: bool) -> list[str]:
    measured = tab.evaluate(MEASURE, strict)
    problems = list(dict.fromkeys(measured["offenders"]))
    if measured["scrollWidth"] > measured["innerWidth"]:
        problems.insert(
            0,
            f"the page is {measured['scrollWidth']} px wide in a "
            f"{measured['innerWidth']} px window",
        )
    return problems


def overflow(tab, *, strict: bool) -> list[str]:
    """What overflows on the loaded page, with its menus and disclosures closed and then open;
    empty when it fits."""
    problems = _measure(tab, strict=strict)
    if tab.evaluate(TOGGLE_MENUS, True):
        problems += [f"details open: {problem}" for problem in _measure(tab, strict=strict)]
        tab.evaluate(TOGGLE_MENUS, False)
    return problems


def _report(found: dict[str, list[str]]) -> str:
    return "\n".join(f"{page}\n    " + "\n    ".join(problems) for page, problems in found.items())


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # PBKDF2 for a dozen users would cost most of this module's time for nothing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


def _populate(org: Organization, owner: User) -> SimpleNamespace:
    """Rows in every console list, with values as long as real ones get."""
    from governance.services.api_keys import api_key_create, api_key_revoke
    from governance.services.ingest_sources import ingest_source_create
    from governance.services.members import invitation_accept, invitation_create
    from governance.services.policies import policy_draft_update, policy_publish, policy_rollback
    from governance.services.servers import server_create
    from governance.services.sessions import sessions_kill_for_server
    from governance.services.tools import tools_observe

    now = timezone.now()
    for email, role in [
        ("olga.administrator-with-a-long-address@acme-interplanetary.test", "admin"),
        ("dave.auditor@acme.test", "auditor"),
        ("erin.chief-information-security-officer@acme-interplanetary.test", "ciso"),
    ]:
        _invitation, token = invitation_create(org=org, actor=owner, email=email, role=role)
        invitation_accept(token=token, user=_user(email))
    # An admin with a long address creates some of the rows below: the lists show who did.
    olga = User.objects.get(email__startswith="olga.")
    _invitation, token = invitation_create(
        org=org,
        actor=owner,
        email="newcomer-with-a-rather-long-address@subsidiary.acme-interplanetary.test",
        role="developer",
    )
    servers = [
        server_create(
            org=org,
            actor=owner,
            name=name,
            slug=slug,
            description="Files, tickets and records of the operations team in every region.",
            upstream_url=f"http://127.0.0.1:9/{slug}/mcp/with/a/rather/long/path/segment",
        )
        for name, slug in [
            ("Files", "files"),
            ("Customer records and tickets (production, eu-west-1)", "customer-records-prod"),
            ("GitHub", "github"),
        ]
    ]
    tools_observe(
        org_id=org.id,
        server_id=servers[0].id,
        tools=[
            {
                "name": name,
                "description": f"{name.replace('_', ' ').capitalize()} in the shared workspace.",
                "inputSchema": {
                    "type": "object",
                    "properties": {"path": {"type": "string"}, "content": {"type": "string"}},
                    "required": ["path"],
                },
            }
            for name in ["read_file", "write_file", "delete_records", "list_directory"]
        ],
    )
    keys = []
    for name, scopes, extra in [
        ("claude-code on the nightly reconciliation runner", ["proxy", "read"], {}),
        (
            "operations agents (every region, every shift)",
            ["proxy", "read", "write", "ingest", "admin"],
            {
                "allowed_server_ids": [s.id for s in servers],
                "tags": ["ci", "nightly", "operations", "eu-west-1", "pager"],
                "expires_at": now + timedelta(days=90),
            },
        ),
        ("laptop agent", ["proxy"], {"tags": ["dev"]}),
    ]:
        key, _ = api_key_create(org=org, actor=olga, name=name, scopes=scopes, **extra)
        keys.append(key)
    api_key_revoke(org=org, actor=owner, key=keys[2])
    rules = [
        {
            "id": "deny-destructive-tools-on-production-customer-records",
            "action": "deny",
            "message": "Deleting or dropping customer records needs a human with a ticket",
            "match": {"servers": ["customer-records-prod"], "tools": ["delete_*", "drop_*"]},
        },
        {
            "id": "alert-on-writes",
            "action": "alert",
            "match": {
                "tools": ["write_file"],
                "arguments": [{"path": "path", "op": "glob", "value": "/etc/*"}],
                "time": {
                    "days": ["mon", "tue", "wed"],
                    "start": "09:00",
                    "end": "18:00",
                    "tz": "Europe/Paris",
                },
            },
        },
        {"id": "allow-rest", "action": "allow"},
    ]
    policy_draft_update(org=org, actor=owner, rules=rules[1:])
    policy_publish(org=org, actor=owner, note="first rules")
    policy_draft_update(org=org, actor=owner, rules=rules)
    policy_publish(
        org=org,
        actor=olga,
        note="Block destructive tools on the production customer records after the incident",
    )
    rollback = policy_rollback(
        org=org, actor=owner, number=1, note="v2 blocked the nightly reconciliation job"
    )
    policy_draft_update(org=org, actor=owner, rules=rules)
    sessions = []
    for i, (state, era, client) in enumerate(
        [
            ("active", "modern", "claude-code-enterprise-edition-with-plugins"),
            ("suspended", "legacy", "cursor"),
            ("killed", "modern", "an-agent-framework-with-a-very-long-client-name-indeed"),
            ("closed", "legacy", ""),
        ]
    ):
        sessions.append(
            AgentSession.objects.create(
                id=f"igm_{i}f3a9c2b7e41d8a6c05b9e2f7d3a1c48{i}",
                org=org,
                server=servers[i % 2],
                server_slug=servers[i % 2].slug,
                key=keys[i % 2] if i < 3 else None,
                user=owner if i == 3 else None,
                era=era,
                protocol_version="2026-07-28" if era == "modern" else "2025-06-18",
                client_name=client,
                client_version="1.0.113-beta.4+build.20260115",
                state=state,
                state_reason="deleting files outside the task it was given by the operator"
                if state != "active"
                else "",
                calls=123456,
                denied=789,
                errors=12,
                started_at=now - timedelta(hours=i + 1),
                last_seen_at=now - timedelta(minutes=i),
            )
        )
    detail = {
        "kind": "destructive_pattern",
        "tool": "delete_records",
        "decision": "deny",
        "rule_id": "deny-destructive-tools-on-production-customer-records",
        "arguments": {"table": "customers", "where": "region = 'eu-west-1'"},
    }
    for status, kind, severity in [
        ("open", "destructive_pattern", "high"),
        ("open", "rate_spike", "medium"),
        ("acknowledged", "policy_alert", "medium"),
        ("resolved", "tool_drift", "high"),
    ]:
        Anomaly.objects.create(
            org=org,
            session=sessions[0],
            server_slug=servers[1].slug,
            kind=kind,
            severity=severity,
            tool="delete_records_in_every_region_at_once",
            detail=detail,
            status=status,
            note="expected: the nightly import job deletes and reloads staging records"
            if status == "resolved"
            else "",
            resolved_by=owner if status == "resolved" else None,
        )
    for name, provider in [("portkey prod", "portkey"), ("Datadog LLM spans (eu)", "datadog")]:
        ingest_source_create(org=org, actor=olga, name=name, provider=provider)
    # A standing stop, so the sessions page offers to lift it.
    sessions_kill_for_server(
        org=org, actor=owner, server=servers[2], reason="the upstream leaks tokens"
    )
    _observed_calls(org, servers, keys)
    audit = _audit_records(org, servers[1], keys[1], sessions[0])
    return SimpleNamespace(
        org=org,
        server=servers[0],
        session=sessions[0],
        rollback=rollback,
        invitation_token=token,
        audit_seq=audit.seq,
        audit_event_id=audit.id,
    )


def _audit_records(org: Organization, server: Any, key: Any, session: AgentSession) -> Any:
    """Audit records with long tools, arguments and ids; returns the denied call's record."""
    from compliance.audit.writer import append_events
    from compliance.models import AuditEvent
    from tests.api.conftest import tool_call

    arguments = {
        "table": "customers_of_every_region_including_the_archived_ones",
        "where": "region = 'eu-west-1' AND deleted_at IS NULL AND " + "x" * 160,
        "token": "[masked]",
    }
    call = {
        "server_id": str(server.id),
        "server_slug": server.slug,
        "key_id": str(key.id),
        "session_id": session.id,
        "latency_ms": 12.5,
        "upstream_ms": 9.25,
        "client_info": {"name": session.client_name, "version": session.client_version},
    }
    ingested = tool_call(org, tool="summarise_every_document_in_the_shared_drive", **call)
    ingested["source"] = "ingest:portkey"
    append_events(
        [
            tool_call(org, tool="read_file", arguments={"path": "/srv/a/" + "b" * 120}, **call),
            ingested,
            tool_call(
                org,
                tool="delete_records_in_every_region_at_once_without_confirmation",
                decision="deny",
                rule_id="deny-destructive-tools-on-production-customer-records",
                arguments=arguments,
                **call,
            ),
        ]
    )
    return AuditEvent.objects.filter(org_id=org.id, decision="deny").order_by("-seq").first()


def _observed_calls(org: Organization, servers: list[Any], keys: list[Any]) -> None:
    """Calls in the audit log (and so in the dashboard's rollups), with long names."""
    from compliance.audit.writer import append_events
    from governance.events import Actor, Envelope

    now = timezone.now()
    events = []
    for i in range(40):
        key = keys[i % 2]
        decision = ("allow", "deny", "alert", "allow")[i % 4]
        data = {
            "server_slug": servers[i % 3].slug,
            "key_id": str(key.id),
            "method": "tools/call",
            "tool": ("delete_records_in_every_region_at_once", "read_file", "write_file")[i % 3],
            "decision": decision,
            "rule_id": "deny-destructive-tools-on-production-customer-records"
            if decision == "deny"
            else None,
            "latency_ms": 3.5 * (i + 1),
            "upstream_ms": 3.0 * (i + 1),
            "result": "denied" if decision == "deny" else "ok",
            "client_info": {"name": "claude-code-enterprise-edition-with-plugins"},
        }
        actor = Actor(kind="api_key", id=str(key.id), label=key.name)
        envelope = Envelope(
            org_id=str(org.id), type="tool_call", source="proxy", actor=actor, data=data
        )
        events.append({**envelope.as_dict(), "ts": (now - timedelta(minutes=i * 7)).isoformat()})
    append_events(events)


@pytest.fixture
def console_data(acme, alice) -> SimpleNamespace:
    Organization.objects.filter(pk=acme.pk).update(name=LONG_ORG_NAME)
    acme.refresh_from_db()
    return _populate(acme, alice)


def _signed_in(browser, base_url: str, user: User, viewport: dict[str, int]):
    client = Client()
    client.force_login(user, backend="django.contrib.auth.backends.ModelBackend")
    context = browser.new_context(base_url=base_url, viewport=viewport)
    context.set_default_timeout(15_000)
    context.add_cookies(
        [
            {
                "name": django_settings.SESSION_COOKIE_NAME,
                "value": client.cookies[django_settings.SESSION_COOKIE_NAME].value,
                "url": base_url,
            }
        ]
    )
    return context


def _sweep(tab, urls: list[str], *, strict: bool) -> dict[str, list[str]]:
    found = {}
    for url in urls:
        response = tab.goto(url)
        assert response is not None and response.status < 500, (url, response)
        problems = overflow(tab, strict=strict)
        if problems:
            found[url] = problems
    return found


def _console_urls(data: SimpleNamespace) -> list[str]:
    urls = [url(data) for url in PAGES.values()]
    urls += [url(data) for url in OTHER_PAGES.values()]
    urls += [reverse(name) for name in ACCOUNT_PAGES]
    urls.append(MISSING_PAGE)
    return urls


def _placeholder(converter: Any) -> str:
    return {"IntConverter": "1", "UUIDConverter": "00000000-0000-0000-0000-000000000000"}.get(
        type(converter).__name__, "x"
    )


def test_every_console_page_is_in_the_layout_sweep():
    names = {p.name for p in urlpatterns}
    swept = set(PAGES) | FORM_TARGETS
    assert names == swept, (names - swept, swept - names)
    others = {f"observe:{p.name}" for p in observe_urlpatterns}
    assert others <= {name.split(" ")[0] for name in OTHER_PAGES}, others


@pytest.mark.parametrize("name", sorted(FORM_TARGETS))
def test_a_route_left_out_of_the_sweep_answers_no_page_to_get(client, alice, acme, name):
    pattern = next(p for p in urlpatterns if p.name == name).pattern
    url = reverse(f"console:{name}", args=[_placeholder(c) for c in pattern.converters.values()])
    login(client, alice)
    assert client.get(url).status_code == 405, url


@pytest.mark.parametrize("width", WIDTHS, ids=list(WIDTHS))
def test_no_console_page_overflows_its_window(browser, live_server, console_data, alice, width):
    context = _signed_in(browser, live_server.url, alice, WIDTHS[width])
    tab = context.new_page()
    try:
        found = _sweep(tab, _console_urls(console_data), strict=width == "1280px")
    finally:
        context.close()
    assert not found, _report(found)


@pytest.mark.parametrize("width", WIDTHS, ids=list(WIDTHS))
def test_no_signed_out_page_overflows_its_window(browser, live_server, width):
    context = browser.new_context(base_url=live_server.url, viewport=WIDTHS[width])
    tab = context.new_page()
    try:
        found = _sweep(tab, [reverse(name) for name in SIGNED_OUT_PAGES], strict=width == "1280px")
    finally:
        context.close()
    assert not found, _report(found)


@pytest.mark.parametrize("width", WIDTHS, ids=list(WIDTHS))
def test_pages_answered_to_a_form_fit_the_window(browser, live_server, console_data, alice, width):
    """The pages only a form leads to: a new key's secret, a new ingest source's secret, and the
    stop panel with its errors."""
    context = _signed_in(browser, live_server.url, alice, WIDTHS[width])
    tab = context.new_page()
    strict = width == "1280px"
    found: dict[str, list[str]] = {}
    try:
        tab.goto(reverse("console:key_create"))
        tab.fill("#id_name", "a key made in the layout test for the operations agents")
        tab.click("button:has-text('Create key')")
        expect(tab.locator("[data-testid=new-key]")).to_be_visible()
        found["key created"] = overflow(tab, strict=strict)

        tab.goto(reverse("console:ingest_source_create"))
        tab.fill("#id_name", "a source made in the layout test")
        tab.click("button:has-text('Add source')")
        expect(tab.locator("[data-testid=new-secret]")).to_be_visible()
        found["ingest source created"] = overflow(tab, strict=strict)

        tab.goto(reverse("console:sessions"))
        tab.fill("#id_confirm_slug", "not-the-slug")
        tab.locator("[data-testid=emergency-stop] button[type=submit]").click()
        expect(tab.locator("[data-testid=emergency-stop] .field-error")).to_be_visible()
        found["emergency stop refused"] = overflow(tab, strict=strict)
    finally:
        context.close()
    found = {page: problems for page, problems in found.items() if problems}
    assert not found, _report(found)


@pytest.mark.slow
@pytest.mark.parametrize("width", WIDTHS, ids=list(WIDTHS))
def test_the_playground_with_a_tool_s_answer_fits_the_window(
    browser, igris_base, demo_server, acme, alice, width
):
    """The playground lists tools and shows answers only when it reaches the proxy, so this one
    runs against igris' whole ASGI application and the demo upstream."""
    from governance.services.organizations import organization_update

    organization_update(org=acme, actor=alice, name=LONG_ORG_NAME, default_posture="allow")
    context = _signed_in(browser, igris_base, alice, WIDTHS[width])
    tab = context.new_page()
    try:
        tab.goto(reverse("console:playground"))
        tab.click(".pg-tool[data-tool=query_records]")
        tab.fill("#pg-arg-table", "customers")
        tab.fill("#pg-arg-where", '{"country": "US"}')
        tab.click("[data-testid=pg-run]")
        expect(tab.locator("[data-testid=pg-structured]")).to_be_visible()
        problems = overflow(tab, strict=width == "1280px")
    finally:
        context.close()
    assert not problems, _report({"playground": problems})
