"""The live event feed: `GET /api/v1/events` (Server-Sent Events) and `/ws/events` (websocket).

Only persisted events are sent: the audit writer publishes each stored event to the hot-state
channel `live:<org_id>` after commit, and a reconnecting client's missed events come from the
audit table itself, so the feed shows exactly what the hash chain holds, in `seq` order, scoped to
the caller's organisation.

Both are Channels consumers, routed by Channels' `URLRouter` (`routing`), without Django's
request cycle and without a channel layer: the events reach them through one hot-state
subscription per organisation per process (`fanout`), which bench/live_fanout.py measured
against a channels-redis group. Sharing one driver (`LiveStream`) keeps the SSE and websocket
semantics identical.

The modules, bottom up:

- `events`: the events as the feed sends them, the filters, and the audit table reads;
- `clock`: one connection's send timeout and heartbeat (`SendClock`);
- `fanout`: one subscription per organisation per process, fanned out to the connections'
  buffers, and what a slow consumer gets;
- `stream`: replay then live for one connection, without gap or duplicate;
- `request`: parameters, authentication and the problem answers;
- `consumers`: the SSE and websocket consumers;
- `routing`: their routes.
"""

from __future__ import annotations

from compliance.live.clock import SendClock

__all__ = ["SendClock"]
