"""A feed request: its parameters, its principal, and the problem answers that refuse it.

Authentication: `Authorization: Bearer ig_…` with scope `read` (never a key in the URL: URLs end
up in logs). Websockets also accept the console session cookie when the `Origin` is this site's
(browsers cannot set headers on a websocket; the Origin check stops cross-site pages from riding
the cookie). Filters: `types` (`tool_call` = tool_call and mcp_request, `anomaly` = anomaly and
anomaly.*, `session_update` = session.*, `policy_change` = policy.*, any other audit type by
name; without `types` every event is sent), `server=<slug>`, `session=<id>`. Resume with
`Last-Event-ID` or `?since=<seq>`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from importlib import import_module
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.http.cookie import parse_cookie

from compliance.live.clock import Scope, Send
from compliance.live.events import FeedFilter, closing
from compliance.live.stream import LiveStream
from governance.api.errors import PROBLEM_CONTENT_TYPE, problem_body
from governance.events import EVENT_TYPE
from governance.keys import KeyError_, bearer_token, get_verifier

log = logging.getLogger("igris.live")

MAX_TYPES = 20


class Problem(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra

    def body(self) -> bytes:
        return json.dumps(problem_body(self.status, self.code, self.detail, **self.extra)).encode()

    def headers(self) -> list[tuple[bytes, bytes]]:
        out = [(b"content-type", PROBLEM_CONTENT_TYPE.encode()), (b"cache-control", b"no-store")]
        if self.status == 401:
            out.append((b"www-authenticate", b'Bearer realm="igris"'))
        return out


def scope_headers(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        out[key] = (
            f"{out[key]}, {value.decode('latin-1')}" if key in out else value.decode("latin-1")
        )
    return out


def _since(value: str | None, name: str) -> int | None:
    if value is None:
        return None
    value = value.strip()
    if not value.isdigit() or len(value) > 18:
        raise Problem(400, "invalid", f"{name} must be a sequence number (a whole number).")
    return int(value)


def parameters(scope: Scope, headers: dict[str, str]) -> tuple[FeedFilter, int | None]:
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    if "token" in query or "access_token" in query:
        raise Problem(
            400,
            "invalid",
            "Keys are not accepted in the URL (URLs are logged): send "
            "'Authorization: Bearer ig_…'.",
        )
    kinds = None
    if "types" in query:
        names = [n.strip() for v in query["types"] for n in v.split(",") if n.strip()]
        if not names or len(names) > MAX_TYPES:
            raise Problem(400, "invalid", f"types lists 1-{MAX_TYPES} event types.")
        for name in names:
            # Feed kinds and audit types share the grammar; outside it nothing could ever match.
            if not EVENT_TYPE.match(name):
                raise Problem(400, "invalid", f'types: "{name[:100]}" is not an event type.')
        kinds = frozenset(names)
    server = query.get("server", [None])[-1]
    session = query.get("session", [None])[-1]
    if (server is not None and not 0 < len(server) <= 64) or (
        session is not None and not 0 < len(session) <= 128
    ):
        raise Problem(400, "invalid", "server is 1-64 characters, session 1-128.")
    # The browser's automatic reconnection sends Last-Event-ID while the URL keeps its `since`.
    since = _since(headers.get("last-event-id"), "Last-Event-ID")
    if since is None:
        since = _since(query.get("since", [None])[-1], "since")
    return FeedFilter(kinds, server, session), since


async def key_principal(headers: dict[str, str]) -> tuple[str, Callable[[], Awaitable[bool]]]:
    """(org id, re-check) for `Authorization: Bearer ig_…` with scope read."""
    header = headers.get("authorization")
    if not header:
        raise Problem(
            401, "unauthenticated", "Send 'Authorization: Bearer ig_…'.", reason="missing"
        )
    token = bearer_token(header)
    if token is None:
        raise Problem(
            401, "unauthenticated", "Use 'Authorization: Bearer ig_…'.", reason="malformed"
        )
    try:
        verified = await get_verifier().verify(token)
    except KeyError_ as exc:
        raise Problem(401, "unauthenticated", exc.message, reason=exc.reason) from None
    if "read" not in verified.scopes:
        raise Problem(
            403, "permission_denied", "This API key lacks the read scope.", reason="scope"
        )

    async def still_allowed() -> bool:
        # Cached; a revocation evicts it everywhere through the hot-state flags.
        try:
            await get_verifier().verify(token)
        except KeyError_:
            return False
        return True

    return verified.org_id, still_allowed


def _same_origin(origin: str | None, host: str | None) -> bool:
    if not origin or not host:
        return False
    if origin in getattr(settings, "CSRF_TRUSTED_ORIGINS", ()):
        return True
    # Host and port only: behind a TLS-terminating proxy the scope says ws while the page is https.
    return urlsplit(origin).netloc.lower() == host.strip().lower()


def _session_org(session_key: str) -> str:
    from django.contrib.auth import get_user

    from governance.middleware import current_membership
    from governance.permissions import Action, role_can

    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key)
    request: Any = SimpleNamespace(session=store)
    request.user = get_user(request)
    if not request.user.is_authenticated:
        raise Problem(401, "unauthenticated", "The console session is not valid.", reason="session")
    membership = current_membership(request)
    if membership is None or not role_can(membership.role, Action.AUDIT_READ):
        raise Problem(
            403, "permission_denied", "Your role may not read the audit log.", reason="role"
        )
    return str(membership.org_id)


async def websocket_principal(
    headers: dict[str, str],
) -> tuple[str, Callable[[], Awaitable[bool]] | None]:
    if "authorization" in headers:
        return await key_principal(headers)
    session_key = parse_cookie(headers.get("cookie", "")).get(settings.SESSION_COOKIE_NAME)
    if not session_key:
        raise Problem(
            401,
            "unauthenticated",
            "Send 'Authorization: Bearer ig_…' or sign in to the console.",
            reason="missing",
        )
    if not _same_origin(headers.get("origin"), headers.get("host")):
        raise Problem(
            403,
            "permission_denied",
            "A console session is accepted only from this site's own pages.",
            reason="origin",
        )
    return await closing(_session_org)(session_key), None


async def open_stream(stream: LiveStream) -> None:
    try:
        await stream.open()
    except Exception as exc:
        log.warning("live feed unavailable: %s", exc)
        raise Problem(
            503, "unavailable", "The live feed is unavailable; retry in a moment."
        ) from exc


async def refuse_http(send: Send, problem: Problem) -> None:
    body = problem.body()
    headers = [*problem.headers(), (b"content-length", str(len(body)).encode())]
    if problem.status == 405:
        headers.append((b"allow", b"GET"))
    await send({"type": "http.response.start", "status": problem.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
