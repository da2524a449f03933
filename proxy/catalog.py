"""What the proxy knows of each server's tools: annotations (for the destructive detector) and
approval state (tool drift, the "rug pull": a description or schema that changed after approval).
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async

from proxy.runtime import TtlCache

log = logging.getLogger("igris.proxy.catalog")


@dataclass(frozen=True)
class ToolInfo:
    annotations: dict[str, Any]
    drifted: bool


def _load(server_id: str) -> dict[str, ToolInfo]:
    from django.db import connection

    from governance.models import Tool, ToolState

    try:
        return {
            name: ToolInfo(annotations or {}, state == ToolState.DRIFTED)
            for name, annotations, state in Tool.objects.filter(
                server_id=uuid.UUID(server_id)
            ).values_list("name", "annotations", "state")
        }
    finally:
        connection.close()


def _observe(
    org_id: str, server_id: str, tools: list[dict[str, Any]]
) -> tuple[list[str], dict[str, str]]:
    from django.db import connection

    from governance.models import Tool
    from governance.services import tools_observe

    try:
        drifted = tools_observe(org_id=org_id, server_id=server_id, tools=tools)
        approved = dict(
            Tool.objects.filter(server_id=uuid.UUID(server_id)).values_list(
                "name", "approved_fingerprint"
            )
        )
        return drifted, approved
    finally:
        connection.close()


class Catalog:
    def __init__(self, ttl_s: float = 30.0) -> None:
        self.cache = TtlCache(ttl_s)

    async def tools(self, server_id: str) -> dict[str, ToolInfo]:
        return await self.cache.get(server_id, _load, server_id)

    def invalidate(self, server_id: str) -> None:
        self.cache.drop(lambda k: k == server_id)

    async def observe(
        self, org_id: str, server_id: str, tools: list[dict[str, Any]], *, block: bool
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """Store what a tools/list showed. Returns the newly drifted names and the tools to show:
        all of them, or, when the organisation blocks drifted tools, only approved ones."""
        from governance.services.tools import tool_fingerprint

        drifted, approved = await sync_to_async(_observe, thread_sensitive=False)(
            org_id, server_id, tools
        )
        self.invalidate(server_id)
        if not block:
            return drifted, tools
        shown = [
            t
            for t in tools
            if not isinstance(t, dict)
            or t.get("name") not in approved
            or approved[t["name"]] == tool_fingerprint(t)
        ]
        return drifted, shown
