"""Seed (or refresh) the demo organisation used by `make run`.

Idempotent: on a later start the stored login and key are reused when they still work, so the
values in var/demo.json stay valid across restarts; otherwise fresh ones are generated.

The rows commit before var/demo.json is written and before the caller prints the banner or
starts serving: a key that can be read anywhere already exists for every database connection.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from django.db import transaction

DEMO_EMAIL = "demo@igris.local"
DEMO_ORG_SLUG = "demo"
DEMO_SERVER_SLUG = "demo-tools"
DEMO_KEY_NAME = "demo agent"
DEMO_ADMIN_GROUP = "demo operators (read-only admin)"
# Tables the demo login may browse in Django admin. Not allauth's social apps and tokens: they
# hold OAuth client secrets.
DEMO_ADMIN_APPS = ("governance", "compliance")

# What a new user should see igris do on the first calls: a destructive tool refused with a
# reason, a risky one let through but flagged, everything else forwarded (posture "allow").
STARTER_POLICY_NOTE = "starter policy seeded by make run"
STARTER_RULES: list[dict[str, Any]] = [
    {
        "id": "no-record-deletes",
        "action": "deny",
        "description": "Starter rule: the demo's destructive tool is refused.",
        "message": "Deleting records is not allowed by the demo policy; ask an operator.",
        "match": {
            "servers": [DEMO_SERVER_SLUG],
            "methods": ["tools/call"],
            "tools": ["delete_records"],
        },
    },
    {
        "id": "alert-on-file-writes",
        "action": "alert",
        "description": "Starter rule: file writes go through but raise an alert.",
        "message": "An agent wrote a file through the demo server.",
        "match": {
            "servers": [DEMO_SERVER_SLUG],
            "methods": ["tools/call"],
            "tools": ["write_file"],
        },
    },
]
STARTER_SUMMARY = "delete_records denied, write_file raises an alert, every other call allowed"


@dataclass
class DemoInfo:
    console_url: str
    admin_url: str
    email: str
    password: str
    api_key: str
    proxy_url: str
    server_slug: str
    upstream_url: str
    policy: str


def _read(path: Path) -> dict[str, str]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def seed_demo(*, base_url: str, upstream_url: str, state_path: Path) -> DemoInfo:
    with transaction.atomic():
        info = _seed_rows(base_url=base_url, upstream_url=upstream_url, state_path=state_path)
    # Only now, committed: the key in this file is one every igris process can find.
    state_path.parent.mkdir(parents=True, exist_ok=True)
    state_path.write_text(json.dumps(asdict(info), indent=2) + "\n")
    state_path.chmod(0o600)
    return info


def _seed_rows(*, base_url: str, upstream_url: str, state_path: Path) -> DemoInfo:
    from allauth.account.models import EmailAddress

    from governance.keys import KeyError_, verify_key_sync
    from governance.models import McpServer, Organization, User
    from governance.services.api_keys import api_key_create
    from governance.services.organizations import organization_create
    from governance.services.servers import server_create, server_update

    previous = _read(state_path)
    user = User.objects.filter(email=DEMO_EMAIL).first()
    password = previous.get("password", "")
    if user is None:
        password = secrets.token_urlsafe(12)
        user = User.objects.create_user(email=DEMO_EMAIL, password=password, first_name="Demo")
    elif not password or not user.check_password(password):
        password = secrets.token_urlsafe(12)
        user.set_password(password)
        user.save(update_fields=["password"])
    _grant_admin(user)
    EmailAddress.objects.update_or_create(
        user=user, email=DEMO_EMAIL, defaults={"verified": True, "primary": True}
    )

    org = Organization.objects.filter(slug=DEMO_ORG_SLUG).first()
    if org is None:
        org = organization_create(name="Demo Org", owner=user, slug=DEMO_ORG_SLUG)
        # The demo starts open so every tool can be tried; policies narrow it down.
        org.default_posture = "allow"
        org.save(update_fields=["default_posture"])

    server = McpServer.objects.filter(org=org, slug=DEMO_SERVER_SLUG).first()
    if server is None:
        server = server_create(
            org=org,
            actor=user,
            name="Demo tools",
            slug=DEMO_SERVER_SLUG,
            description="The bundled demo MCP server (echo, add, records, files, slow).",
            upstream_url=upstream_url,
        )
    elif server.upstream_url != upstream_url:
        server_update(org=org, actor=user, server=server, upstream_url=upstream_url)
    policy = _starter_policy(org, user)

    api_key = previous.get("api_key", "")
    valid = False
    if api_key:
        try:
            key, _ = verify_key_sync(api_key)
            valid = key.org_id == org.id
        except KeyError_:
            valid = False
    if not valid:
        _, api_key = api_key_create(
            org=org, actor=user, name=DEMO_KEY_NAME, scopes=["proxy", "read", "write", "ingest"]
        )

    base = base_url.rstrip("/")
    return DemoInfo(
        console_url=f"{base}/",
        admin_url=f"{base}/admin/",
        email=DEMO_EMAIL,
        password=password,
        api_key=api_key,
        proxy_url=f"{base}/proxy/{DEMO_SERVER_SLUG}/mcp",
        server_slug=DEMO_SERVER_SLUG,
        upstream_url=upstream_url,
        policy=policy,
    )


def _grant_admin(user: Any) -> None:
    """Let the demo login into Django admin without making it a superuser: staff, with view
    rights on igris's tables. Changes stay in the console and the API, whose services record
    an audit event for each (an admin edit would bypass them); the admin's session actions
    (kill, suspend, resume) call those services too. A superuser could also edit users and
    permissions, which a login printed to a terminal and saved in var/demo.json should not."""
    from django.contrib.auth.models import Group, Permission

    group, _ = Group.objects.get_or_create(name=DEMO_ADMIN_GROUP)
    group.permissions.set(
        Permission.objects.filter(
            content_type__app_label__in=DEMO_ADMIN_APPS, codename__startswith="view_"
        )
    )
    if not user.is_staff:
        user.is_staff = True
        user.save(update_fields=["is_staff"])
    user.groups.add(group)


def _starter_policy(org: Any, user: Any) -> str:
    """Publish the starter policy through the policy services (a numbered version, audited) if
    the organisation has none yet; never overwrite one the user wrote. Returns a summary."""
    from governance.models import PolicyDraft, PolicyVersion
    from governance.services.policies import policy_draft_update, policy_publish

    latest = PolicyVersion.objects.filter(org=org).order_by("-number").first()
    if latest is None and not PolicyDraft.objects.filter(org=org).exists():
        policy_draft_update(org=org, actor=user, rules=STARTER_RULES)
        latest = policy_publish(org=org, actor=user, note=STARTER_POLICY_NOTE)
    if latest is None:
        return f"no version published yet (default {org.default_posture})"
    if latest.rules == STARTER_RULES:
        return f"v{latest.number}: {STARTER_SUMMARY}"
    return f"v{latest.number}: {len(latest.rules)} rules, default {latest.posture}"
