"""Tool catalogue (rug-pull guard).

The proxy reports the tools it sees (`tools_observe`) from a background task; an operator
approves a changed tool (`tool_approve`) after reading the diff.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from django.db import transaction
from django.utils import timezone

from governance.events import SYSTEM, actor_for_user, emit
from governance.models import (
    Organization,
    Tool,
    ToolState,
    User,
)
from governance.permissions import Action
from governance.runtime import flags
from governance.services.base import ServiceError, _check

__all__ = ["tool_approve", "tool_fingerprint", "tools_observe"]


def tool_fingerprint(tool: dict[str, Any]) -> str:
    """SHA-256 over what an agent trusts: the description and the input schema."""
    canonical = json.dumps(
        {
            "description": tool.get("description") or "",
            "inputSchema": tool.get("inputSchema") or {},
        },
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _announce_tools(server_id: Any) -> None:
    from governance.runtime.hotstate.sync import publish_flag_sync

    key = flags.tools_changed(server_id)
    transaction.on_commit(
        lambda: publish_flag_sync(key, str(timezone.now().timestamp()), ttl_s=3600)
    )


@transaction.atomic
def tools_observe(*, org_id: Any, server_id: Any, tools: list[dict[str, Any]]) -> list[str]:
    """Record the tools a server listed; returns the names that drifted from their approval.

    A tool seen for the first time is approved as first seen (trust on first use); a later change
    of its description or schema marks it drifted and keeps both versions for the diff.
    """
    now = timezone.now()
    existing = {t.name: t for t in Tool.objects.select_for_update().filter(server_id=server_id)}
    drifted: list[str] = []
    changed = False
    for item in tools:
        name = item.get("name")
        if not isinstance(name, str) or not name:
            continue
        fp = tool_fingerprint(item)
        description = item.get("description") or ""
        schema = item.get("inputSchema") or {}
        annotations = item.get("annotations") or {}
        tool = existing.get(name)
        if tool is None:
            Tool.objects.create(
                org_id=org_id,
                server_id=server_id,
                name=name[:200],
                description=description,
                input_schema=schema,
                annotations=annotations,
                fingerprint=fp,
                approved_fingerprint=fp,
                approved_description=description,
                approved_input_schema=schema,
                first_seen_at=now,
                last_seen_at=now,
            )
            changed = True
            continue
        updates: dict[str, Any] = {"last_seen_at": now}
        if tool.fingerprint != fp or tool.annotations != annotations:
            updates.update(
                fingerprint=fp,
                description=description,
                input_schema=schema,
                annotations=annotations,
            )
            changed = True
        if fp != tool.approved_fingerprint:
            if tool.state != ToolState.DRIFTED:
                updates["state"] = ToolState.DRIFTED
                drifted.append(name)
                changed = True
        elif tool.state == ToolState.DRIFTED:
            updates["state"] = ToolState.APPROVED  # the server went back to the approved text
            changed = True
        Tool.objects.filter(pk=tool.pk).update(**updates)
    for name in drifted:
        emit(
            org_id=org_id,
            type="tool.drifted",
            actor=SYSTEM,
            source="proxy",
            data={"server_id": str(server_id), "tool": name},
        )
    if changed:
        _announce_tools(server_id)
    return drifted


@transaction.atomic
def tool_approve(*, org: Organization, actor: User, tool: Tool) -> Tool:
    _check(org, actor, Action.SERVERS_MANAGE)
    tool = Tool.objects.select_for_update().get(pk=tool.pk, org=org)
    if tool.state != ToolState.DRIFTED:
        raise ServiceError("This tool has no pending change to approve.", code="not_drifted")
    before = {"description": tool.approved_description, "inputSchema": tool.approved_input_schema}
    tool.approved_fingerprint = tool.fingerprint
    tool.approved_description = tool.description
    tool.approved_input_schema = tool.input_schema
    tool.state = ToolState.APPROVED
    tool.approved_by = actor
    tool.approved_at = timezone.now()
    tool.save()
    emit(
        org_id=org.id,
        type="tool.approved",
        actor=actor_for_user(actor),
        data={
            "server_id": str(tool.server_id),
            "tool": tool.name,
            "before": before,
            "after": {"description": tool.description, "inputSchema": tool.input_schema},
        },
    )
    _announce_tools(tool.server_id)
    return tool
