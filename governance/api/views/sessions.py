"""Agent sessions: list with filters, kill / suspend / resume one, or kill every session of a
key, a server or the whole organisation. (A session's detail, with its recent calls from the
audit store, is served by compliance/api/sessions.py: governance does not read the audit tables.)"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from governance.api.base import ApiView
from governance.api.pagination import KeysetPaginator, page_of
from governance.api.serializers import (
    EmptySerializer,
    KillAllResultSerializer,
    KillAllSerializer,
    ReasonSerializer,
    SessionFilters,
    SessionSerializer,
)
from governance.permissions import Action
from governance.selectors.keys import api_key_get_for_org
from governance.selectors.servers import server_get_for_org
from governance.selectors.sessions import session_get_for_org, sessions_for_org
from governance.services.sessions import (
    org_emergency_stop,
    session_kill,
    session_resume,
    session_suspend,
    sessions_kill_for_key,
    sessions_kill_for_server,
)


class SessionListView(ApiView):
    access = {"GET": Action.SESSIONS_VIEW}
    query = {"GET": SessionFilters}
    paginator = KeysetPaginator("-last_seen_at", "id")

    @extend_schema(responses=page_of(SessionSerializer), summary="List agent sessions")
    def get(self, request: Request) -> Response:
        sessions = sessions_for_org(org=self.org)
        if self.params.get("state"):
            sessions = sessions.filter(state=self.params["state"])
        if self.params.get("server"):
            sessions = sessions.filter(server_id=self.params["server"])
        if self.params.get("key"):
            sessions = sessions.filter(key_id=self.params["key"])
        return Response(self.page(sessions, SessionSerializer))


class _SessionAction(ApiView):
    access = {"POST": Action.SESSIONS_KILL}

    def _answer(self, session_id: str) -> Response:
        session = session_get_for_org(org=self.org, session_id=session_id)
        return Response(SessionSerializer(session).data)


class SessionKillView(_SessionAction):
    @extend_schema(request=ReasonSerializer, responses=SessionSerializer, summary="Kill a session")
    def post(self, request: Request, session_id: str) -> Response:
        session = session_get_for_org(org=self.org, session_id=session_id)
        data = self.body(ReasonSerializer)
        session_kill(org=self.org, actor=self.actor, session=session, reason=data.get("reason", ""))
        return self._answer(session_id)


class SessionSuspendView(_SessionAction):
    @extend_schema(
        request=ReasonSerializer, responses=SessionSerializer, summary="Suspend a session"
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = session_get_for_org(org=self.org, session_id=session_id)
        data = self.body(ReasonSerializer)
        session_suspend(
            org=self.org, actor=self.actor, session=session, reason=data.get("reason", "")
        )
        return self._answer(session_id)


class SessionResumeView(_SessionAction):
    @extend_schema(
        request=EmptySerializer, responses=SessionSerializer, summary="Resume a suspended session"
    )
    def post(self, request: Request, session_id: str) -> Response:
        session = session_get_for_org(org=self.org, session_id=session_id)
        self.body(EmptySerializer)
        session_resume(org=self.org, actor=self.actor, session=session)
        return self._answer(session_id)


class SessionKillAllView(ApiView):
    access = {"POST": Action.SESSIONS_KILL}
    problems = {"POST": ("404",)}  # the key or server named in the body is not this org's

    @extend_schema(
        request=KillAllSerializer,
        responses=KillAllResultSerializer,
        summary="Kill every session of a key, a server or the organisation (until lifted)",
    )
    def post(self, request: Request) -> Response:
        data = self.body(KillAllSerializer)
        scope, reason = data["scope"], data.get("reason", "")
        org, actor = self.org, self.actor
        if scope == "key":
            key = api_key_get_for_org(org=org, key_id=data["id"])
            count = sessions_kill_for_key(org=org, actor=actor, key=key, reason=reason)
        elif scope == "server":
            server = server_get_for_org(org=org, server_id=data["id"])
            count = sessions_kill_for_server(org=org, actor=actor, server=server, reason=reason)
        else:
            count = org_emergency_stop(org=org, actor=actor, reason=reason)
        target = str(data["id"]) if data.get("id") else None
        return Response({"scope": scope, "id": target, "sessions_killed": count})
