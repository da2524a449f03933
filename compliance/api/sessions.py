"""One agent session with its recent calls from the audit store."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from compliance.api.events import EVENT_FIELDS, AuditEventSerializer, flat_event
from compliance.models import AuditEvent
from governance.api.base import ApiView
from governance.api.serializers import (
    SessionSerializer,
)
from governance.permissions import Action
from governance.selectors.sessions import session_get_for_org

RECENT_CALLS = 50

# --- sessions -------------------------------------------------------------------------------


class SessionDetailSerializer(SessionSerializer):
    recent_calls = AuditEventSerializer(many=True, help_text="Newest first, at most 50.")


class SessionDetailView(ApiView):
    access = {"GET": Action.SESSIONS_VIEW}

    @extend_schema(
        responses=SessionDetailSerializer, summary="One agent session with its recent calls"
    )
    def get(self, request: Request, session_id: str) -> Response:
        session = session_get_for_org(org=self.org, session_id=session_id)
        calls = (
            AuditEvent.objects.filter(org_id=self.org.id, session_id=session.id)
            .order_by("-seq")
            .values(*EVENT_FIELDS)[:RECENT_CALLS]
        )
        body = dict(SessionSerializer(session).data)
        body["recent_calls"] = [flat_event(row) for row in calls]
        return Response(body)
