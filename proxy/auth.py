"""Who is calling: an API key (`Authorization: Bearer ig_…`, scope `proxy`) or, for the console's
playground, the console session cookie with a same-origin `Origin` header (so no other site can
drive the proxy with a signed-in user's cookie).

An address that keeps sending keys that fail is throttled (governance.keys.BadKeyGuard): 429
with Retry-After, and no check of the key while it lasts. A valid key costs no extra round trip.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings

from governance.events import Actor
from governance.keys import KeyError_, bearer_token, client_address, get_bad_key_guard, get_verifier
from governance.runtime.hotstate import get_hotstate
from proxy import jsonrpc


class AuthFailure(Exception):
    def __init__(
        self, status: int, reason: str, message: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers

    @property
    def code(self) -> int:
        """The JSON-RPC error code of this failure."""
        if self.status == 429:
            return jsonrpc.RATE_LIMITED
        return jsonrpc.UNAUTHORIZED if self.status == 401 else jsonrpc.FORBIDDEN


@dataclass(frozen=True)
class Principal:
    kind: str  # api_key | user
    org_id: str
    identity: str  # "key:<id>" or "user:<id>": what sessions and rate limits are bound to
    label: str
    key_id: str | None = None
    user_id: int | None = None
    key_tags: frozenset[str] = field(default_factory=frozenset)
    role: str | None = None
    allowed_server_ids: frozenset[str] = field(default_factory=frozenset)

    def actor(self) -> Actor:
        if self.kind == "api_key":
            return Actor(kind="api_key", id=self.key_id, label=self.label)
        return Actor(kind="user", id=str(self.user_id), label=self.label)


def public_base(scope: dict[str, Any], headers: dict[str, str]) -> str:
    if settings.IGRIS_PUBLIC_URL:
        return settings.IGRIS_PUBLIC_URL.rstrip("/")
    host = headers.get("host", "localhost")
    return f"{scope.get('scheme', 'http')}://{host}"


def _challenge(
    scope: dict[str, Any], headers: dict[str, str], slug: str, error: str | None = None
) -> list[tuple[bytes, bytes]]:
    # RFC 9728 §5.1: point clients at the protected-resource metadata of this exact resource.
    meta = f"{public_base(scope, headers)}/.well-known/oauth-protected-resource/proxy/{slug}/mcp"
    value = f'Bearer resource_metadata="{meta}"'
    if error:
        value += f', error="{error}"'
    return [(b"www-authenticate", value.encode())]


def _same_origin(scope: dict[str, Any], headers: dict[str, str]) -> bool:
    origin = headers.get("origin")
    if not origin:
        return False
    allowed = {f"{scope.get('scheme', 'http')}://{headers.get('host', '')}"}
    if settings.IGRIS_PUBLIC_URL:
        allowed.add(settings.IGRIS_PUBLIC_URL.rstrip("/"))
    return origin.rstrip("/") in allowed


def _session_principal(session_key: str) -> Principal | None:
    from django.contrib.sessions.backends.db import SessionStore
    from django.db import connection

    from governance.middleware import SESSION_ORG_KEY
    from governance.models import Membership, User
    from governance.permissions import Action, role_can

    try:
        session = SessionStore(session_key=session_key)
        data = session.load()
        user_id = data.get("_auth_user_id")
        org_id = data.get(SESSION_ORG_KEY)
        if not user_id or not org_id:
            return None
        user = User.objects.filter(pk=user_id, is_active=True).first()
        if user is None:
            return None
        membership = Membership.objects.filter(user=user, org_id=org_id).first()
        if membership is None or not role_can(membership.role, Action.PLAYGROUND_USE):
            return None
        return Principal(
            kind="user",
            org_id=str(org_id),
            identity=f"user:{user.pk}",
            label=user.email,
            user_id=user.pk,
            role=membership.role,
        )
    finally:
        connection.close()


def _throttled(wait_s: float) -> AuthFailure:
    retry = max(1, int(wait_s + 0.999))
    return AuthFailure(
        429,
        "throttled",
        f"Too many failed API key attempts from this address; retry after {retry} s.",
        [(b"retry-after", str(retry).encode())],
    )


def caller_address(scope: dict[str, Any]) -> str:
    client = scope.get("client")
    return client_address(client[0] if client else None)


async def authenticate(scope: dict[str, Any], headers: dict[str, str], slug: str) -> Principal:
    authorization = headers.get("authorization")
    if authorization:
        guard = get_bad_key_guard()
        address = caller_address(scope)
        token = bearer_token(authorization)
        try:
            verified = await get_verifier().verify(token)
        except KeyError_ as exc:
            # Only failures are throttled: a valid key always gets through, so one broken
            # client behind a shared address cannot lock out the others (BadKeyGuard).
            wait = guard.blocked_for(address)
            if wait is None:
                wait = await guard.failed(get_hotstate(), address)
            if wait is not None:
                raise _throttled(wait) from None
            raise AuthFailure(
                401, exc.reason, exc.message, _challenge(scope, headers, slug, "invalid_token")
            ) from None
        if "proxy" not in verified.scopes:
            raise AuthFailure(
                403,
                "scope",
                "This API key lacks the 'proxy' scope.",
                _challenge(scope, headers, slug, "insufficient_scope"),
            )
        return Principal(
            kind="api_key",
            org_id=verified.org_id,
            identity=f"key:{verified.id}",
            label=verified.name,
            key_id=verified.id,
            key_tags=verified.tags,
            role=verified.role,
            allowed_server_ids=verified.allowed_server_ids,
        )
    cookie_header = headers.get("cookie")
    if cookie_header and "origin" in headers:
        if not _same_origin(scope, headers):
            raise AuthFailure(
                403, "origin", "Cross-origin requests may not use the console session.", []
            )
        try:
            jar = SimpleCookie(cookie_header)
        except CookieError:
            jar = SimpleCookie()
        morsel = jar.get(settings.SESSION_COOKIE_NAME)
        if morsel is not None and morsel.value:
            principal = await sync_to_async(_session_principal, thread_sensitive=False)(
                morsel.value
            )
            if principal is not None:
                return principal
    raise AuthFailure(
        401,
        "missing",
        "No API key was sent: use 'Authorization: Bearer ig_…'.",
        _challenge(scope, headers, slug),
    )
