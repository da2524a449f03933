"""Agent sessions."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.http import Http404

from governance.models import AgentSession, Organization


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


def sessions_filtered_for_org(
    *, org: Organization, state: str = "", server_id: str = ""
) -> QuerySet[AgentSession]:
    """The console's session list: newest first, with the server, key and user it shows."""
    qs = AgentSession.objects.filter(org=org).select_related("server", "key", "user")
    if state:
        qs = qs.filter(state=state)
    if server_id:
        qs = qs.filter(server_id=server_id)
    return qs.order_by("-started_at", "id")


def session_detail_get_for_org(*, org: Organization, session_id: str) -> AgentSession:
    """One session with the server, key and user its console page shows."""
    session = (
        AgentSession.objects.filter(org=org, pk=session_id)
        .select_related("server", "key", "user")
        .first()
    )
    if session is None:
        raise Http404("no such session in this organisation")
    return session
