"""Upstream MCP server services: create, update, reset the circuit breaker, delete.

Each records its own event and tells every proxy process to reload the organisation's servers.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from governance import crypto
from governance.events import actor_for_user, emit
from governance.models import McpServer, Organization, UpstreamAuth, User
from governance.permissions import Action
from governance.selectors.servers import server_circuits
from governance.services.base import ServiceError, _check, _clean

__all__ = [
    "server_circuit_reset",
    "server_create",
    "server_delete",
    "server_update",
]

SERVER_FIELDS = (
    "name",
    "slug",
    "description",
    "upstream_url",
    "auth_type",
    "auth_header_name",
    "connect_timeout_s",
    "total_timeout_s",
    "enabled",
)


def _apply_credential(server: McpServer, credential: str | None) -> None:
    if credential is None:
        return
    server.credential_encrypted = (
        crypto.encrypt(credential, context=str(server.id)) if credential else None
    )


def _check_upstream(server: McpServer) -> None:
    from governance.ssrf import AddressPolicy, UnsafeUpstream, check_upstream_url

    try:
        check_upstream_url(server.upstream_url, policy=AddressPolicy.from_settings(settings))
    except UnsafeUpstream as exc:
        raise ServiceError(str(exc), field="upstream_url", code="unsafe_upstream") from None


def _check_auth_config(server: McpServer) -> None:
    if server.auth_type == UpstreamAuth.HEADER and not server.auth_header_name:
        raise ServiceError("Name the header that carries the credential.", field="auth_header_name")
    if server.auth_type != UpstreamAuth.NONE and not server.credential_encrypted:
        raise ServiceError("This authentication type needs a credential.", field="credential")


def _announce_server_change(org_id: Any) -> None:
    from governance.runtime.flags import server_changed
    from governance.runtime.hotstate.sync import publish_flag_sync

    org_key = str(org_id)
    transaction.on_commit(
        lambda: publish_flag_sync(
            server_changed(org_key), str(timezone.now().timestamp()), ttl_s=3600
        )
    )


@transaction.atomic
def server_create(
    *, org: Organization, actor: User, credential: str | None = None, **fields: Any
) -> McpServer:
    _check(org, actor, Action.SERVERS_MANAGE)
    unknown = set(fields) - set(SERVER_FIELDS)
    if unknown:
        raise ServiceError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    server = McpServer(org=org, created_by=actor, **fields)
    if McpServer.objects.filter(org=org, slug=server.slug).exists():
        raise ServiceError(
            f"A server with slug '{server.slug}' exists already.", field="slug", code="conflict"
        )
    _apply_credential(server, credential)
    _clean(server)
    _check_upstream(server)
    _check_auth_config(server)
    server.save()
    emit(
        org_id=org.id,
        type="server.created",
        actor=actor_for_user(actor),
        data={
            "server_id": str(server.id),
            "slug": server.slug,
            "upstream_url": server.upstream_url,
            "auth_type": server.auth_type,
        },
    )
    _announce_server_change(org.id)
    return server


@transaction.atomic
def server_update(
    *,
    org: Organization,
    actor: User,
    server: McpServer,
    credential: str | None = None,
    **changes: Any,
) -> McpServer:
    _check(org, actor, Action.SERVERS_MANAGE)
    unknown = set(changes) - set(SERVER_FIELDS)
    if unknown:
        raise ServiceError(f"Unknown field(s): {', '.join(sorted(unknown))}.")
    server = McpServer.objects.select_for_update().get(pk=server.pk, org=org)
    before = {k: getattr(server, k) for k in changes}
    for key, value in changes.items():
        setattr(server, key, value)
    if (
        "slug" in changes
        and McpServer.objects.filter(org=org, slug=server.slug).exclude(pk=server.pk).exists()
    ):
        raise ServiceError(
            f"A server with slug '{server.slug}' exists already.", field="slug", code="conflict"
        )
    _apply_credential(server, credential)
    _clean(server)
    _check_upstream(server)
    _check_auth_config(server)
    server.save()
    diff = {
        k: {"from": before[k], "to": getattr(server, k)}
        for k in changes
        if before[k] != getattr(server, k)
    }
    if credential is not None:
        diff["credential"] = {"from": "***", "to": "***" if credential else None}
    emit(
        org_id=org.id,
        type="server.updated",
        actor=actor_for_user(actor),
        data={"server_id": str(server.id), "slug": server.slug, "changes": diff},
    )
    _announce_server_change(org.id)
    return server


@transaction.atomic
def server_circuit_reset(*, org: Organization, actor: User, server: McpServer) -> None:
    """Close an open circuit breaker by hand: every proxy process forwards to the server again
    at once (the breaker opens anew if the upstream keeps failing)."""
    from governance.runtime.flags import CIRCUIT_HALF_OPEN, CIRCUIT_OPEN, circuit, circuit_trial
    from governance.runtime.hotstate.sync import publish_flag_sync

    _check(org, actor, Action.SERVERS_MANAGE)
    state = server_circuits(server_ids=[server.id])[str(server.id)]
    if state.state not in (CIRCUIT_OPEN, CIRCUIT_HALF_OPEN):
        raise ServiceError(
            f"The circuit breaker of {server.name} is not open ({state.state}).", code="not_open"
        )
    emit(
        org_id=org.id,
        type="server.circuit_reset",
        actor=actor_for_user(actor),
        data={
            "server_id": str(server.id),
            "slug": server.slug,
            "state": state.state,
            "failures": state.failures,
            "last_error": state.last_error,
        },
    )
    server_key = str(server.id)
    transaction.on_commit(lambda: publish_flag_sync(circuit(server_key), None))
    transaction.on_commit(lambda: publish_flag_sync(circuit_trial(server_key), None))


@transaction.atomic
def server_delete(*, org: Organization, actor: User, server: McpServer) -> None:
    _check(org, actor, Action.SERVERS_MANAGE)
    emit(
        org_id=org.id,
        type="server.deleted",
        actor=actor_for_user(actor),
        data={"server_id": str(server.id), "slug": server.slug},
    )
    server.delete()
    _announce_server_change(org.id)
