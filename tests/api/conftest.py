"""Fixtures of the REST API tests: the cast's other roles, keys per scope set, a populated
acme ("world"), and a small JSON client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from tests.conftest import _user

ALL_SCOPES = ["proxy", "read", "write", "ingest", "admin"]


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    # The cast logs in with force_login; hashing their passwords with PBKDF2 would cost most
    # of this suite's time for nothing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@dataclass
class Api:
    """A JSON client for /api/v1/ with a bearer key, or a logged-in console session."""

    client: Any
    token: str | None = None

    def call(
        self,
        method: str,
        path: str,
        body: Any = None,
        *,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        raw: bytes | str | None = None,
        content_type: str = "application/json",
    ) -> Any:
        url = path if path.startswith("/") else f"/api/v1/{path}"
        extra = dict(headers or {})
        if self.token:
            extra["Authorization"] = f"Bearer {self.token}"
        kwargs: dict[str, Any] = {"headers": extra}
        if method == "get":
            return self.client.get(url, params or {}, **kwargs)
        if params:
            from urllib.parse import urlencode

            url = f"{url}?{urlencode(params)}"
        if raw is not None:
            data: Any = raw
        elif body is None:
            data = b""
        else:
            data = json.dumps(body)
        return getattr(self.client, method)(url, data, content_type=content_type, **kwargs)

    def get(self, path: str, **params: Any) -> Any:
        return self.call("get", path, params=params)

    def post(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.call("post", path, body, **kwargs)

    def put(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.call("put", path, body, **kwargs)

    def patch(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self.call("patch", path, body, **kwargs)

    def delete(self, path: str, **kwargs: Any) -> Any:
        return self.call("delete", path, **kwargs)


def member(org, email: str, role: str):
    from governance.models import Membership

    user = _user(email)
    Membership.objects.create(org=org, user=user, role=role)
    return user


@pytest.fixture
def dave(acme):
    """An auditor of acme."""
    return member(acme, "dave@acme.test", "auditor")


@pytest.fixture
def erin(acme):
    """acme's CISO."""
    return member(acme, "erin@acme.test", "ciso")


@pytest.fixture
def olga(acme):
    """An admin (role) of acme."""
    return member(acme, "olga@acme.test", "admin")


def make_key(org, actor, scopes, name="test key", **kwargs):
    from governance.services.api_keys import api_key_create

    return api_key_create(org=org, actor=actor, name=name, scopes=scopes, **kwargs)


@pytest.fixture
def admin_key(acme, alice):
    """alice's acme key with every scope, admin included: (ApiKey, plaintext)."""
    return make_key(acme, alice, ALL_SCOPES, name="acme admin")


@pytest.fixture
def api(client, admin_key) -> Api:
    return Api(client, admin_key[1])


@pytest.fixture
def anonymous(client) -> Api:
    return Api(client)


@pytest.fixture
def charlie_api(client, globex, charlie) -> Api:
    """globex's owner with every scope: must never see or touch acme's objects."""
    return Api(client, make_key(globex, charlie, ALL_SCOPES, name="globex admin")[1])


def session_api(client, user) -> Api:
    from tests.conftest import login

    client.logout()
    login(client, user)
    return Api(client)


def tool_call(org, seq_hint: int = 0, **data: Any) -> dict[str, Any]:
    """A recorded tools/call envelope as the proxy builds it (call fields inside data)."""
    import uuid
    from datetime import UTC, datetime

    fields = {
        "server_slug": "files",
        "method": "tools/call",
        "tool": "read_file",
        "decision": "allow",
        "result": "ok",
        "arguments": {},
    }
    fields.update(data)
    ts = fields.pop("ts", None) or datetime.now(UTC)
    return {
        "id": str(uuid.uuid4()),
        "org_id": str(org.id),
        "type": fields.pop("type", "tool_call"),
        "source": "proxy",
        "ts": ts.isoformat(),
        "actor": fields.pop("actor", {"kind": "api_key", "id": None, "label": "agent"}),
        "data": fields,
    }


@pytest.fixture
def world(acme, alice, bob):
    """acme with one of everything: a server with a tool, a key, a session, an anomaly, an open
    invitation, a published policy (v1) and a draft."""
    from governance.models import AgentSession, Anomaly, Membership, Tool
    from governance.services.ingest_sources import ingest_source_create
    from governance.services.members import invitation_create
    from governance.services.policies import policy_draft_update, policy_publish
    from governance.services.servers import server_create
    from governance.services.tools import tools_observe

    server = server_create(
        org=acme,
        actor=alice,
        name="Files",
        slug="files",
        upstream_url="http://127.0.0.1:9/mcp",
    )
    tools_observe(
        org_id=acme.id,
        server_id=server.id,
        tools=[
            {
                "name": "read_file",
                "description": "Read a file.",
                "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}},
                "annotations": {"readOnlyHint": True},
            }
        ],
    )
    tool = Tool.objects.get(server=server, name="read_file")
    key, _ = make_key(acme, alice, ["proxy", "read"], name="agents", tags=["ci"])
    session = AgentSession.objects.create(
        id="sess-acme-1", org=acme, server=server, server_slug="files", key=key, era="legacy"
    )
    anomaly = Anomaly.objects.create(
        org=acme, session=session, server_slug="files", kind="rate_spike", tool="read_file"
    )
    invitation, _ = invitation_create(
        org=acme, actor=alice, email="newcomer@acme.test", role="developer"
    )
    policy_draft_update(
        org=acme,
        actor=alice,
        rules=[{"id": "deny-delete", "action": "deny", "match": {"tools": ["delete_*"]}}],
    )
    version = policy_publish(org=acme, actor=alice, note="first")
    target = member(acme, "frank@acme.test", "auditor")
    source, _ = ingest_source_create(org=acme, actor=alice, name="portkey prod", provider="portkey")
    return SimpleNamespace(
        source=source,
        server=server,
        tool=tool,
        key=key,
        session=session,
        anomaly=anomaly,
        invitation=invitation,
        version=version,
        member=Membership.objects.get(org=acme, user=target),
        bob_member=Membership.objects.get(org=acme, user=bob),
    )


def fill(path: str, world: Any) -> str:
    return path.format(
        server=world.server.id,
        tool=world.tool.id,
        key=world.key.id,
        session=world.session.id,
        anomaly=world.anomaly.id,
        invitation=world.invitation.id,
        version=world.version.number,
        member=world.member.id,
        source=world.source.id,
    )


def outbox_count() -> int:
    from governance.models import PendingEvent

    return PendingEvent.objects.count()


def fill_body(body: Any, world: Any) -> Any:
    if isinstance(body, str):
        return fill(body, world)
    if isinstance(body, dict):
        return {k: fill_body(v, world) for k, v in body.items()}
    if isinstance(body, list):
        return [fill_body(v, world) for v in body]
    return body


def send(api: Api, endpoint: Any, world: Any, **overrides: Any) -> Any:
    """Make the endpoint's valid request (overrides: body, params, headers)."""
    path = fill(endpoint.path, world)
    params = overrides.pop("params", endpoint.params)
    if endpoint.method == "get":
        return api.call("get", path, params=params, **overrides)
    body = overrides.pop("body", fill_body(endpoint.body, world))
    return api.call(endpoint.method, path, body, params=params, **overrides)
