"""Per-process caches of the hot path, kept fresh by hot-state notifications.

Nothing here is the source of truth: servers and policy versions live in the database, kill
flags and session bindings in hot state. Every cache entry is dropped when a flag announces a
change, and has a TTL as a safety net.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from governance.runtime import flags
from governance.runtime.flag_listener import follow_flags
from proxy.catalog import Catalog
from proxy.ttlcache import TtlCache

log = logging.getLogger("igris.proxy")


@dataclass(frozen=True)
class ServerConfig:
    id: str
    org_id: str
    slug: str
    url: str
    auth_header: tuple[str, str] | None
    connect_timeout_s: float
    total_timeout_s: float
    enabled: bool


@dataclass(frozen=True)
class OrgConfig:
    id: str
    slug: str
    posture: str
    block_drifted_tools: bool
    auto_suspend_on_anomaly: bool
    redact_keys: frozenset[str]


def _load_server(org_id: str, slug: str) -> ServerConfig | None:
    from django.db import connection

    from governance.models import McpServer
    from governance.upstream_auth import upstream_auth_header

    try:
        server = McpServer.objects.filter(org_id=uuid.UUID(org_id), slug=slug).first()
        if server is None:
            return None
        return ServerConfig(
            str(server.id),
            str(server.org_id),
            server.slug,
            server.upstream_url,
            upstream_auth_header(server),
            server.connect_timeout_s,
            server.total_timeout_s,
            server.enabled,
        )
    finally:
        connection.close()


def _load_org(org_id: str) -> OrgConfig | None:
    from django.db import connection

    from governance.models import Organization

    try:
        org = Organization.objects.filter(pk=org_id).first()
        if org is None:
            return None
        return OrgConfig(
            str(org.id),
            org.slug,
            org.default_posture,
            org.block_drifted_tools,
            org.auto_suspend_on_anomaly,
            frozenset(str(k).lower() for k in (org.redact_argument_keys or [])),
        )
    finally:
        connection.close()


def _load_snapshot(org_id: str) -> Any:
    from django.db import connection

    from governance.policy_store import snapshot_for_org

    try:
        return snapshot_for_org(org_id)
    finally:
        connection.close()


class Runtime:
    """What one proxy process keeps in memory."""

    def __init__(self, *, ttl_s: float = 30.0) -> None:
        self.servers = TtlCache(ttl_s)
        self.orgs = TtlCache(ttl_s)
        self.snapshots = TtlCache(ttl_s)
        self.catalog = Catalog(ttl_s)
        # Local view of kill flags, pushed by notifications, so open streams close within a
        # second; requests still read the flags from hot state.
        self.killed: dict[str, str] = {}
        self.kill_generation = 0
        # Circuit breaker transitions of other processes go to the breakers (proxy.breaker).
        self.on_circuit: Callable[[str, str | None], None] | None = None

    async def server(self, org_id: str, slug: str) -> ServerConfig | None:
        return await self.servers.get((org_id, slug), _load_server, org_id, slug)

    async def org(self, org_id: str) -> OrgConfig | None:
        return await self.orgs.get(org_id, _load_org, org_id)

    async def snapshot(self, org_id: str) -> Any:
        return await self.snapshots.get(org_id, _load_snapshot, org_id)

    def on_flag(self, key: str, value: str | None) -> None:
        if key.startswith("kill:"):
            if value:
                self.killed[key] = value
            else:
                self.killed.pop(key, None)
            self.kill_generation += 1
        elif key.startswith("policy:"):
            org_id = key.split(":", 1)[1]
            self.snapshots.drop(lambda k: k == org_id)
        elif key.startswith("tools:"):
            self.catalog.invalidate(key.split(":", 1)[1])
        elif key.startswith("server:"):
            org_id = key.split(":", 1)[1]
            self.servers.drop(lambda k: k[0] == org_id)
            self.orgs.drop(lambda k: k == org_id)
        elif key.startswith("circuit:") and self.on_circuit is not None:
            self.on_circuit(key, value)

    def local_kill(self, keys: list[str]) -> tuple[str, str] | None:
        for key in keys:
            parsed = flags.parse_kill(self.killed.get(key))
            if parsed:
                return parsed
        return None

    def drop_caches(self) -> None:
        self.servers.drop()
        self.orgs.drop()
        self.snapshots.drop()
        self.catalog.cache.drop()

    async def listen(self, hotstate: Any) -> None:
        """Apply flag notifications until cancelled, subscribing again whenever the
        subscription breaks (hot state restarted or unreachable)."""
        await follow_flags(
            lambda: hotstate,
            self.on_flag,
            on_break=self.drop_caches,
            on_resubscribe=lambda: self._catch_up(hotstate),
            name="proxy flag listener",
            log=log,
        )

    async def _catch_up(self, hotstate: Any) -> None:
        """After a break, notifications may have been missed (pub/sub is at most once): caches
        filled meanwhile are dropped, and the local kill view is read again from hot state."""
        self.drop_caches()
        keys = list(self.killed)
        if not keys:
            return
        for key, value in zip(keys, await hotstate.get_flags(keys), strict=True):
            if value:
                self.killed[key] = value
            else:
                self.killed.pop(key, None)
        self.kill_generation += 1
