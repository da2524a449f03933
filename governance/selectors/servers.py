"""MCP servers, their circuit breakers as the proxies publish them, and their tools."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from governance.models import McpServer, Organization, Tool
from governance.runtime import flags
from governance.runtime.flags import Circuit
from governance.selectors.ids import MISSES, positive_int

log = logging.getLogger("igris.governance")


def servers_for_org(*, org: Organization) -> QuerySet[McpServer]:
    return McpServer.objects.filter(org=org).order_by("name")


def server_get_for_org(*, org: Organization, server_id: Any) -> McpServer:
    try:
        return McpServer.objects.get(org=org, pk=server_id)
    except (McpServer.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404("no such MCP server in this organisation") from None


def server_circuits(*, server_ids: Iterable[Any]) -> dict[str, Circuit]:
    """The circuit breaker of each server as the proxies last published it, in one hot-state
    read. An open circuit whose cool-down is over shows as half-open: its next call is the
    trial. State "unknown" when the hot state cannot be read."""
    from governance.runtime.hotstate.sync import read_flags_sync

    ids = [str(server_id) for server_id in server_ids]
    try:
        values = read_flags_sync([flags.circuit(server_id) for server_id in ids])
    except Exception:
        log.warning("could not read circuit breaker states", exc_info=True)
        return {server_id: Circuit(state=flags.CIRCUIT_UNKNOWN) for server_id in ids}
    now = time.time()
    out: dict[str, Circuit] = {}
    for server_id, value in zip(ids, values, strict=True):
        circuit = flags.parse_circuit(value)
        if circuit.state == flags.CIRCUIT_OPEN and (circuit.retry_at or 0) <= now:
            circuit = replace(circuit, state=flags.CIRCUIT_HALF_OPEN)
        out[server_id] = circuit
    return out


def tools_for_org(*, org: Organization) -> QuerySet[Tool]:
    return Tool.objects.filter(org=org).select_related("server", "approved_by")


def tool_get_for_org(*, org: Organization, tool_id: Any) -> Tool:
    try:
        return tools_for_org(org=org).get(pk=positive_int(tool_id))
    except (Tool.DoesNotExist, *MISSES):
        raise Http404("no such tool in this organisation") from None
