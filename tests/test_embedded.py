"""The embedded default, started as `make run` starts it, in a temporary directory."""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.conftest import free_port

ROOT = Path(__file__).resolve().parent.parent


async def _call_through_proxy(url: str, key: str) -> tuple[str, str]:
    """An echo, which the starter policy lets through, then a delete, which it refuses."""
    import httpx2
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    async with (
        httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"}, timeout=30) as http,
        Client(streamable_http_client(url, http_client=http)) as client,
    ):
        result = await client.call_tool("echo", {"text": "hello from the smoke test"})
        assert not result.is_error
        refused = await client.call_tool(
            "delete_records", {"table": "customers", "where": {"id": 1}}
        )
        assert refused.is_error
        return result.content[0].text, refused.content[0].text


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_make_run_starts_serves_a_demo_login_and_stops_cleanly(tmp_path):
    port, upstream_port = free_port(), free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "IGRIS_ENV", "DJANGO_SETTINGS_MODULE"}
    }
    env.update(
        IGRIS_VAR_DIR=str(tmp_path / "var"),
        PORT=str(port),
        IGRIS_DEMO_UPSTREAM_PORT=str(upstream_port),
        PYTHONUNBUFFERED="1",
    )
    log = (tmp_path / "run.log").open("w+")
    proc = subprocess.Popen(
        [sys.executable, "manage.py", "igris_run"],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        health = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                health = httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.HTTPError:
                time.sleep(0.3)
        assert health is not None, (tmp_path / "run.log").read_text()
        assert health.status_code == 200
        assert health.json()["checks"] == {
            "database": {"ok": True, "vendor": "sqlite"},
            "hotstate": {"ok": True, "backend": "memory"},
        }
        demo = json.loads((tmp_path / "var" / "demo.json").read_text())
        assert set(demo) == {
            "console_url",
            "admin_url",
            "email",
            "password",
            "api_key",
            "proxy_url",
            "server_slug",
            "upstream_url",
            "policy",
        }
        assert demo["api_key"].startswith("ig_")
        assert demo["proxy_url"] == f"{base}/proxy/{demo['server_slug']}/mcp"
        printed = (tmp_path / "run.log").read_text()
        for value in (
            demo["email"],
            demo["password"],
            demo["api_key"],
            demo["proxy_url"],
            demo["admin_url"],
            demo["policy"],
        ):
            assert value in printed
        assert demo["admin_url"] == f"{base}/admin/"
        assert demo["policy"].startswith("v1: delete_records denied, write_file raises an alert")
        assert _port_open(upstream_port)

        with httpx.Client(base_url=base, timeout=10) as client:
            page = client.get("/accounts/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
            answer = client.post(
                "/accounts/login/",
                data={
                    "csrfmiddlewaretoken": token,
                    "login": demo["email"],
                    "password": demo["password"],
                },
                headers={"Referer": f"{base}/accounts/login/"},
            )
            assert answer.status_code == 302, answer.text[:2000]
            assert "igris.session_token" in client.cookies
            home = client.get("/", follow_redirects=True)
            assert home.status_code == 200
            assert "Demo Org" in home.text
            # The quick start names the port igris serves on, not one written in the code.
            assert demo["proxy_url"] in home.text
            # The same login opens Django admin (staff, read-only tables).
            admin_home = client.get("/admin/")
            assert admin_home.status_code == 200, admin_home.headers.get("location")
            assert "Audit events" in admin_home.text

        # So does the proxy's 401 challenge (RFC 9728 resource metadata).
        refused = httpx.post(
            demo["proxy_url"],
            json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
            headers={"Accept": "application/json, text/event-stream"},
            timeout=10,
        )
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"] == (
            f'Bearer resource_metadata="{base}/.well-known/oauth-protected-resource'
            f'/proxy/{demo["server_slug"]}/mcp"'
        )

        # An agent's call through the proxy with the printed key, then the same call in the
        # audit log, written by the audit writer running inside the web process.
        echoed, refused = asyncio.run(_call_through_proxy(demo["proxy_url"], demo["api_key"]))
        assert echoed == "hello from the smoke test"
        assert "Deleting records is not allowed by the demo policy" in refused
        bearer = {"Authorization": f"Bearer {demo['api_key']}"}
        calls: list[dict] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(calls) < 2:
            page = httpx.get(
                f"{base}/api/v1/audit-events/?type=tool_call", headers=bearer, timeout=10
            )
            assert page.status_code == 200, page.text
            calls = page.json()["results"]
            time.sleep(0.2)
        assert sorted((c["tool"], c["decision"]) for c in calls) == [
            ("delete_records", "deny"),
            ("echo", "allow"),
        ]
        # The upstream's access log went to its file, not into the terminal with the banner.
        assert '"POST /mcp HTTP/1.1"' not in (tmp_path / "run.log").read_text()
        assert '"POST /mcp HTTP/1.1"' in (tmp_path / "var" / "demo-upstream.log").read_text()
        verify = httpx.get(f"{base}/api/v1/audit/verify/", headers=bearer, timeout=10)
        assert verify.status_code == 200 and verify.json()["ok"] is True
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=30)
        log.close()
    assert code == 0, (tmp_path / "run.log").read_text()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (_port_open(port) or _port_open(upstream_port)):
        time.sleep(0.2)
    assert not _port_open(port) and not _port_open(upstream_port)
