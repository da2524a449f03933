"""API keys: the organisation's keys, what a role may see of them, and authentication's lookup."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from governance.models import ApiKey, Organization
from governance.permissions import Action, role_can


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


def sees_all_keys(role: str | None) -> bool:
    """Key managers and read-only key viewers (CISO) see every key; developers only their own
    (the console's rule, governance/views/keys.py)."""
    return role_can(role, Action.KEYS_MANAGE_ALL) or not role_can(role, Action.KEYS_MANAGE_OWN)


def api_keys_visible(*, org: Organization, role: str | None, user: Any) -> QuerySet[ApiKey]:
    return api_keys_for_org(org=org, created_by=None if sees_all_keys(role) else user)


def api_key_visible_get(*, org: Organization, role: str | None, user: Any, key_id: Any) -> ApiKey:
    key = api_key_get_for_org(org=org, key_id=key_id)
    if not sees_all_keys(role) and key.created_by_id != getattr(user, "pk", None):
        raise Http404("no such API key in this organisation")
    return key


def unscoped_api_key_by_prefix(*, prefix: str) -> ApiKey | None:
    """Authentication only: the key itself names its organisation."""
    return ApiKey.objects.select_related("org").filter(prefix=prefix).first()


def api_keys_active_for_org(*, org: Organization) -> list[ApiKey]:
    """The keys not revoked, by name (what a stop can name)."""
    return list(ApiKey.objects.filter(org=org, revoked_at__isnull=True).order_by("name"))
