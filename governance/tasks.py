"""Periodic governance work, run by the Celery worker's beat schedule.

`close_idle_sessions`: a session whose binding expired from hot state (IGRIS_SESSION_TTL_S without
a request) can no longer be used by any proxy process, so its row is closed too; otherwise the
console would list agents as active for ever after they went away without a DELETE.
"""

from __future__ import annotations

from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.db.models import F
from django.utils import timezone

from governance.models import AgentSession, SessionState


@shared_task(name="governance.close_idle_sessions", acks_late=True)
def close_idle_sessions() -> dict[str, int]:
    cutoff = timezone.now() - timedelta(seconds=int(settings.IGRIS_SESSION_TTL_S))
    closed = AgentSession.objects.filter(state=SessionState.ACTIVE, last_seen_at__lt=cutoff).update(
        state=SessionState.CLOSED, state_reason="idle", ended_at=F("last_seen_at")
    )
    return {"closed": closed}
