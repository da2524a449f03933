"""Upstream servers (the credential is write-only), the connection test and the tool refresh
against a real MCP server (the official SDK's demo upstream), and approving a drifted tool."""

from __future__ import annotations

import pytest

from tests.support import serving

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def demo_upstream():
    """A real MCP server, SSE answers (the SDK default)."""
    from igris_project.demo.upstream import build_demo_app

    with serving(build_demo_app()) as port:
        yield f"http://127.0.0.1:{port}/mcp"


@pytest.fixture(scope="module")
def drifted_upstream():
    """The same server answering with JSON, and with echo's description changed."""
    from igris_project.demo.upstream import build_demo_app

    with serving(build_demo_app(json_response=True, drift=True)) as port:
        yield f"http://127.0.0.1:{port}/mcp"


def _server(api, url: str, **extra):
    body = {"name": "Demo", "slug": "demo", "upstream_url": url, **extra}
    response = api.post("servers/", body)
    assert response.status_code == 201, response.content
    return response.json()


def test_the_credential_is_stored_encrypted_and_never_returned(api, acme):
    from governance import crypto
    from governance.models import McpServer

    created = _server(api, "http://127.0.0.1:9/mcp", auth_type="bearer", credential="s3cr3t-token")
    assert created["has_credential"] is True
    assert "credential" not in created
    stored = McpServer.objects.get(pk=created["id"])
    assert b"s3cr3t-token" not in bytes(stored.credential_encrypted)
    assert crypto.decrypt(stored.credential_encrypted, context=str(stored.id)) == "s3cr3t-token"
    for answer in (api.get(f"servers/{created['id']}/"), api.get("servers/")):
        assert "s3cr3t-token" not in answer.content.decode()
    changed = api.patch(f"servers/{created['id']}/", {"auth_type": "none", "credential": ""})
    assert changed.json()["has_credential"] is False


def test_a_server_is_changed_and_deleted(api, world):
    from governance.models import McpServer

    path = f"servers/{world.server.id}/"
    assert api.patch(path, {"enabled": False, "total_timeout_s": 30}).json()["enabled"] is False
    stored = McpServer.objects.get(pk=world.server.id)
    assert (stored.enabled, stored.total_timeout_s) == (False, 30.0)
    assert api.delete(path).status_code == 204
    assert not McpServer.objects.filter(pk=world.server.id).exists()


def test_a_duplicate_slug_is_a_conflict(api, world):
    response = api.post(
        "servers/", {"name": "Other", "slug": "files", "upstream_url": "http://x.test/"}
    )
    assert (response.status_code, response.json()["code"]) == (409, "conflict")


def test_the_connection_test_reports_the_upstreams_version_and_latency(api, acme, demo_upstream):
    server = _server(api, demo_upstream)
    report = api.post(f"servers/{server['id']}/test/").json()
    assert report["reachable"] is True
    assert report["error"] is None
    assert report["protocol_version"] == "2025-11-25"
    assert report["server_info"]["name"] == "igris-demo"
    assert report["latency_ms"] > 0


def test_an_unreachable_upstream_is_reported_not_raised(api, world):
    report = api.post(f"servers/{world.server.id}/test/")
    assert report.status_code == 200
    assert report.json()["reachable"] is False
    assert "connection failed" in report.json()["error"]


def test_refreshing_tools_records_the_upstreams_catalogue(api, acme, demo_upstream):
    from governance.models import Tool

    server = _server(api, demo_upstream)
    answer = api.post(f"servers/{server['id']}/refresh-tools/")
    assert answer.status_code == 200, answer.content
    body = answer.json()
    names = {tool["name"] for tool in body["tools"]}
    assert {"echo", "add", "delete_records"} <= names
    assert body["observed"] == len(names)
    assert body["drifted"] == []
    assert set(Tool.objects.filter(server_id=server["id"]).values_list("name", flat=True)) == names
    listed = api.get("tools/", server=server["id"], limit=200).json()["results"]
    delete = next(t for t in listed if t["name"] == "delete_records")
    assert delete["annotations"]["destructiveHint"] is True
    assert len(delete["fingerprint"]) == 64
    assert delete["state"] == "approved"


def test_a_changed_tool_is_drifted_until_approved_with_the_diff(
    api, acme, demo_upstream, drifted_upstream
):
    from governance.models import Tool
    from igris_project.demo.upstream import ECHO_DESCRIPTION, ECHO_DRIFTED_DESCRIPTION

    server = _server(api, demo_upstream)
    api.post(f"servers/{server['id']}/refresh-tools/")
    api.patch(f"servers/{server['id']}/", {"upstream_url": drifted_upstream})
    answer = api.post(f"servers/{server['id']}/refresh-tools/").json()
    assert answer["drifted"] == ["echo"]
    echo = Tool.objects.get(server_id=server["id"], name="echo")
    assert echo.state == "drifted"
    assert api.get("tools/", state="drifted").json()["results"][0]["name"] == "echo"
    approved = api.post(f"tools/{echo.id}/approve/")
    assert approved.status_code == 200
    diff = approved.json()["diff"]
    assert diff["changed"] == ["description"]
    assert diff["description"] == {
        "approved": ECHO_DESCRIPTION,
        "current": ECHO_DRIFTED_DESCRIPTION,
    }
    assert approved.json()["tool"]["state"] == "approved"
    echo.refresh_from_db()
    assert (echo.state, echo.approved_description) == ("approved", ECHO_DRIFTED_DESCRIPTION)
    again = api.post(f"tools/{echo.id}/approve/")
    assert (again.status_code, again.json()["code"]) == (409, "not_drifted")


def test_a_refresh_from_an_unreachable_upstream_is_a_bad_gateway(api, world):
    from governance.models import Tool

    response = api.post(f"servers/{world.server.id}/refresh-tools/")
    assert response.status_code == 502
    assert response.json()["code"] == "upstream_error"
    assert Tool.objects.filter(server=world.server).count() == 1


def test_an_upstream_that_now_resolves_to_a_link_local_address_is_not_contacted(
    api, world, monkeypatch
):
    import socket
    from types import SimpleNamespace

    from governance import ssrf
    from governance.models import McpServer

    McpServer.objects.filter(pk=world.server.pk).update(upstream_url="http://tools.internal/mcp")
    link_local = [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("169.254.169.254", 80))]
    # Only the guard's resolver is replaced: the test must not send anything to that address.
    fake = SimpleNamespace(getaddrinfo=lambda *a, **kw: link_local, IPPROTO_TCP=socket.IPPROTO_TCP)
    monkeypatch.setattr(ssrf, "socket", fake)
    report = api.post(f"servers/{world.server.id}/test/").json()
    assert report["reachable"] is False
    assert "169.254.169.254" in report["error"]
    refresh = api.post(f"servers/{world.server.id}/refresh-tools/")
    assert refresh.status_code == 502
    assert "169.254.169.254" in refresh.json()["detail"]


def _open_circuit(server_id, failures: int = 5) -> None:
    """Publish an open circuit exactly as a proxy process does (proxy.breaker)."""
    import time

    from governance.runtime import flags
    from governance.runtime.hotstate.sync import publish_flag_sync

    now = time.time()
    state = flags.Circuit(
        state="open",
        failures=failures,
        opened_at=now,
        retry_at=now + 30,
        last_error="The upstream server did not answer within 5 s.",
        by="another-process",
    )
    assert publish_flag_sync(flags.circuit(server_id), state.encode(), ttl_s=60)


def test_an_open_circuit_shows_on_the_server_and_a_manager_resets_it(
    api, world, django_capture_on_commit_callbacks
):
    from governance.models import PendingEvent

    path = f"servers/{world.server.id}/"
    assert api.get(path).json()["circuit"]["state"] == "closed"
    _open_circuit(world.server.id)
    circuit = api.get(path).json()["circuit"]
    assert (circuit["state"], circuit["failures"]) == ("open", 5)
    assert circuit["opened_at"] < circuit["retry_at"] and "5 s" in circuit["last_error"]
    listed = {s["id"]: s["circuit"]["state"] for s in api.get("servers/").json()["results"]}
    assert listed[str(world.server.id)] == "open"

    with django_capture_on_commit_callbacks(execute=True):
        reset = api.post(f"{path}reset-circuit/")
    assert reset.status_code == 200 and reset.json()["state"] == "closed"
    assert api.get(path).json()["circuit"]["state"] == "closed"
    [event] = PendingEvent.objects.filter(payload__type="server.circuit_reset")
    assert event.payload["data"]["failures"] == 5 and event.payload["data"]["state"] == "open"
    again = api.post(f"{path}reset-circuit/")
    assert again.status_code == 409 and again.json()["code"] == "not_open"


def test_another_organisation_cannot_read_or_reset_a_circuit(api, charlie_api, world):
    _open_circuit(world.server.id)
    path = f"servers/{world.server.id}/"
    assert charlie_api.get(path).status_code == 404
    assert charlie_api.post(f"{path}reset-circuit/").status_code == 404
    assert api.get(path).json()["circuit"]["state"] == "open"


def test_an_auditor_sees_a_circuit_but_cannot_reset_it(client, acme, world):
    from governance.models import Membership
    from tests.api.conftest import session_api
    from tests.conftest import _user

    erin = _user("erin@acme.test")
    Membership.objects.create(org=acme, user=erin, role="auditor")
    _open_circuit(world.server.id)
    auditor = session_api(client, erin)
    path = f"servers/{world.server.id}/"
    assert auditor.get(path).json()["circuit"]["state"] == "open"
    assert auditor.post(f"{path}reset-circuit/").status_code == 403
