"""Tenant-scoped reads the API needs beyond `governance.selectors` (same rules: another
organisation's object is a 404; lists carry their own select_related).

Candidates to move into `governance/selectors.py`; kept here while that module is edited
elsewhere.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import Http404

from governance.models import (
    AgentSession,
    Anomaly,
    ApiKey,
    Organization,
    PolicyDraft,
    PolicyVersion,
    Tool,
)
from governance.permissions import Action, role_can
from governance.selectors import api_key_get_for_org, api_keys_for_org

_MISSES = (ValueError, TypeError, ValidationError, OverflowError)


def _int(value: Any) -> int:
    number = int(str(value))
    if not 0 < number < 2**63:
        raise ValueError(value)
    return number


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


def tools_for_org(*, org: Organization) -> QuerySet[Tool]:
    return Tool.objects.filter(org=org).select_related("server", "approved_by")


def tool_get_for_org(*, org: Organization, tool_id: Any) -> Tool:
    try:
        return tools_for_org(org=org).get(pk=_int(tool_id))
    except (Tool.DoesNotExist, *_MISSES):
        raise Http404("no such tool in this organisation") from None


def sessions_for_org(*, org: Organization) -> QuerySet[AgentSession]:
    return AgentSession.objects.filter(org=org).select_related("user")


def session_get_for_org(*, org: Organization, session_id: Any) -> AgentSession:
    text = str(session_id)
    # A path may carry any character; PostgreSQL text cannot hold NUL, and ids are short.
    if not text or len(text) > 64 or "\x00" in text:
        raise Http404("no such session in this organisation")
    session = sessions_for_org(org=org).filter(pk=text).first()
    if session is None:
        raise Http404("no such session in this organisation")
    return session


def anomalies_for_org(*, org: Organization) -> QuerySet[Anomaly]:
    return Anomaly.objects.filter(org=org).select_related("resolved_by")


def anomaly_get_for_org(*, org: Organization, anomaly_id: Any) -> Anomaly:
    try:
        return anomalies_for_org(org=org).get(pk=_int(anomaly_id))
    except (Anomaly.DoesNotExist, *_MISSES):
        raise Http404("no such anomaly in this organisation") from None


def policy_versions_for_org(*, org: Organization) -> QuerySet[PolicyVersion]:
    return PolicyVersion.objects.filter(org=org).select_related("published_by")


def policy_version_get_for_org(*, org: Organization, number: Any) -> PolicyVersion:
    try:
        return policy_versions_for_org(org=org).get(number=_int(number))
    except (PolicyVersion.DoesNotExist, *_MISSES):
        raise Http404(f"there is no policy version {number}") from None


def policy_latest_for_org(*, org: Organization) -> PolicyVersion | None:
    return policy_versions_for_org(org=org).order_by("-number").first()


def policy_draft_for_org(*, org: Organization) -> PolicyDraft | None:
    return PolicyDraft.objects.filter(org=org).select_related("updated_by").first()
