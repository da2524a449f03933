"""Tenant-scoped reads. Another organisation's object is a 404, never a leak."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable
from dataclasses import replace
from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from governance.models import ApiKey, Invitation, McpServer, Membership, Organization, User
from governance.runtime import flags
from governance.runtime.flags import Circuit

log = logging.getLogger("igris.governance")


def membership_get(*, org: Organization, user: Any) -> Membership | None:
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return Membership.objects.filter(org=org, user=user).first()


def role_of(*, org: Organization, user: Any) -> str | None:
    membership = membership_get(org=org, user=user)
    return membership.role if membership else None


def organizations_for_user(*, user: User) -> QuerySet[Organization]:
    return Organization.objects.filter(memberships__user=user).order_by("name")


def members_for_org(*, org: Organization) -> QuerySet[Membership]:
    return Membership.objects.filter(org=org).select_related("user").order_by("created_at")


def member_get_for_org(*, org: Organization, membership_id: Any) -> Membership:
    try:
        return Membership.objects.select_related("user").get(org=org, pk=int(membership_id))
    except (Membership.DoesNotExist, ValueError, TypeError):
        raise Http404("no such member in this organisation") from None


def invitations_open_for_org(*, org: Organization) -> QuerySet[Invitation]:
    return (
        Invitation.objects.filter(org=org, accepted_at__isnull=True, revoked_at__isnull=True)
        .select_related("invited_by")
        .order_by("-created_at")
    )


def invitation_get_for_org(*, org: Organization, invitation_id: Any) -> Invitation:
    try:
        return Invitation.objects.get(org=org, pk=invitation_id)
    except (Invitation.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404("no such invitation in this organisation") from None


def api_keys_for_org(*, org: Organization, created_by: Any = None) -> QuerySet[ApiKey]:
    qs = (
        ApiKey.objects.filter(org=org)
        .select_related("created_by")
        .prefetch_related("allowed_servers")
    )
    if created_by is not None:
        qs = qs.filter(created_by=created_by)
    return qs.order_by("-created_at")


def api_key_get_for_org(*, org: Organization, key_id: Any) -> ApiKey:
    try:
        return ApiKey.objects.select_related("created_by").get(org=org, pk=key_id)
    except (ApiKey.DoesNotExist, ValueError, TypeError, ValidationError):
        raise Http404("no such API key in this organisation") from None


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


def unscoped_api_key_by_prefix(*, prefix: str) -> ApiKey | None:
    """Authentication only: the key itself names its organisation."""
    return ApiKey.objects.select_related("org").filter(prefix=prefix).first()
