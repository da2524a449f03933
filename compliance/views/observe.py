"""/observe/: the live dashboard. Counters, latency, calls by decision, top lists and the risk heat
map over a window, server-rendered from the rollups (compliance/observe/selectors.py); the live
feed is static/js/observe.js on the console's websocket (/ws/events, session cookie)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse
from django.utils import timezone

from compliance.models import AuditEvent
from compliance.observe import selectors
from compliance.observe.risk import FORMULA, WEIGHTS
from compliance.observe.windows import DEFAULT_WINDOW, WINDOWS, BadWindow, window_for
from governance.permissions import Action
from governance.views.base import Console, console_render, org_required

FEED_ROWS = 20
CHOICES = {"rows": ("servers", "agents"), "cols": ("time", "tools")}


def _feed(org_id: Any) -> list[dict[str, Any]]:
    """The last calls, newest first, so the feed is not empty before the next one arrives.

    In chain order (seq), the order the live feed sends them in: static/js/observe.js resumes
    after the first row's seq, which must be the highest (an ingested event may carry an older
    ts). The newest rows of the (org_id, seq) index: a bounded read, not a scan, once the
    table has planner statistics (see seed_audit_volume: without them the planner took the
    (org_id, type) index and sorted all 1M rows, 570 ms)."""
    rows = (
        AuditEvent.objects.filter(org_id=org_id, type="tool_call")
        .order_by("-seq")
        .values(
            "seq", "ts", "server_slug", "tool", "decision", "latency_ms", "actor", "client_info"
        )
    )[:FEED_ROWS]
    out = []
    for row in rows:
        actor = row["actor"] if isinstance(row["actor"], dict) else {}
        client = row["client_info"] if isinstance(row["client_info"], dict) else {}
        out.append({**row, "key_name": actor.get("label") or "", "client": client.get("name", "")})
    return out


def _bad(request: HttpRequest, console: Console, message: str) -> HttpResponse:
    return console_render(
        request, console, "console/observe/bad_request.html", {"message": message}, status=400
    )


@org_required(Action.AUDIT_READ)
def dashboard(request: HttpRequest, console: Console) -> HttpResponse:
    key = request.GET.get("window", DEFAULT_WINDOW)
    try:
        window = window_for(key, timezone.now())
    except BadWindow as exc:
        return _bad(request, console, str(exc))
    choice = {}
    for name, allowed in CHOICES.items():
        value = request.GET.get(name, allowed[0])
        if value not in allowed:
            return _bad(
                request, console, f"{name} must be {' or '.join(allowed)}; got {value[:20]!r}"
            )
        choice[name] = value
    board = selectors.dashboard(
        org_id=console.org.id,
        window=window,
        rows=choice["rows"],
        columns=choice["cols"],  # type: ignore[arg-type]
    )
    peak = max((b.total for b in board.series), default=0)
    context = {
        "board": board,
        "window_key": window.spec.key,
        "windows": list(WINDOWS.values()),
        "rows": choice["rows"],
        "cols": choice["cols"],
        "formula": FORMULA,
        "weights": WEIGHTS,
        "series_peak": peak,
        "series_bars": _bars(board, peak),
        "feed": _feed(console.org.id),
    }
    return console_render(request, console, "console/observe/dashboard.html", context)


def _bars(board: selectors.Dashboard, peak: int) -> list[dict[str, Any]]:
    """Stacked bars of calls by decision, as SVG geometry in a 100 x 100 box per bucket."""
    bars = []
    for bucket in board.series:
        y = 100.0
        parts = []
        for decision in board.series_decisions:
            count = bucket.by_decision.get(decision, 0)
            if not count:
                continue
            height = 100.0 * count / peak if peak else 0.0
            y -= height
            parts.append(
                {"decision": decision, "count": count, "y": round(y, 2), "h": round(height, 2)}
            )
        bars.append({"start": bucket.start, "total": bucket.total, "parts": parts})
    return bars
