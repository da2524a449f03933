"""What the proxy knows of each server's tools: annotations (for the destructive detector) and
approval state (tool drift, the "rug pull": a description or schema that changed after approval).
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from asgiref.sync import sync_to_async

from proxy.ttlcache import TtlCache

log = logging.getLogger("igris.proxy.catalog")


@dataclass(frozen=True)
class ToolInfo:
    annotations: dict[str, Any]
    drifted: bool
    fingerprint: str = ""
    approved_fingerprint: str = ""


def _load(server_id: str) -> dict[str, ToolInfo]:
    from django.db import connection

    from governance.models import Tool, ToolState

    try:
        rows = Tool.objects.filter(server_id=uuid.UUID(server_id)).values_list(
            "name", "annotations", "state", "fingerprint", "approved_fingerprint"
        )
        return {
            name: ToolInfo(annotations or {}, state == ToolState.DRIFTED, fp, approved)
            for name, annotations, state, fp, approved in rows
        }
    finally:
        connection.close()


def _observe(
    org_id: str, server_id: str, tools: list[dict[str, Any]]
) -> tuple[list[str], dict[str, str]]:
    from django.db import connection

    from governance.models import Tool
    from governance.services.tools import tools_observe

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


# An unchanged listing is written (its tools' last_seen_at) at most this often per server.
SEEN_REFRESH_S = 300.0


class Catalog:
    def __init__(self, ttl_s: float = 30.0) -> None:
        self.cache = TtlCache(ttl_s)
        self._written: dict[str, float] = {}  # server id -> monotonic time of the last write

    async def tools(self, server_id: str) -> dict[str, ToolInfo]:
        return await self.cache.get(server_id, _load, server_id)

    async def _known(self, server_id: str) -> dict[str, ToolInfo] | None:
        try:
            return await self.tools(server_id)
        except Exception:
            return None

    def invalidate(self, server_id: str) -> None:
        self.cache.drop(lambda k: k == server_id)

    async def observe(
        self, org_id: str, server_id: str, tools: list[dict[str, Any]], *, block: bool
    ) -> tuple[list[str], list[dict[str, Any]]]:
        """Store what a tools/list showed. Returns the newly drifted names and the tools to show:
        all of them, or, when the organisation blocks drifted tools, only approved ones."""
        from governance.services.tools import tool_fingerprint

        known = await self._known(server_id)
        listed = {t["name"]: t for t in tools if isinstance(t.get("name"), str)}
        unchanged = known is not None and all(
            name in known
            and known[name].fingerprint == tool_fingerprint(tool)
            and known[name].annotations == (tool.get("annotations") or {})
            for name, tool in listed.items()
        )
        recent = time.monotonic() - self._written.get(server_id, -SEEN_REFRESH_S) < SEEN_REFRESH_S
        drifted: list[str] = []
        if unchanged and recent:
            # Nothing new to record: no database write on the listing's path.
            approved = {name: info.approved_fingerprint for name, info in (known or {}).items()}
        else:
            try:
                drifted, approved = await sync_to_async(_observe, thread_sensitive=False)(
                    org_id, server_id, tools
                )
            except Exception:
                # PostgreSQL unreachable: answer from what is known; a tool never approved is
                # hidden when the organisation blocks unapproved changes (fail closed).
                log.warning("could not record the tools of server %s", server_id, exc_info=True)
                approved = {n: i.approved_fingerprint for n, i in (known or {}).items()}
            else:
                self._written[server_id] = time.monotonic()
                if len(self._written) > 10_000:
                    self._written.clear()
                self.invalidate(server_id)
                await self._known(server_id)  # warm again while the database answers
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
