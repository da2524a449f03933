"""API key verification: a sync path for the REST API and a cached async path for the proxy.

Failures carry a reason code (`missing`, `malformed`, `invalid`, `expired`, `revoked`) that is
safe to show: `invalid` covers both "no such prefix" and "wrong secret" so nothing helps guessing.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from governance import crypto

KEY_FLAG_PREFIX = "apikey:changed:"

REASONS = {
    "missing": "No API key was sent: use 'Authorization: Bearer ig_…'.",
    "malformed": "The API key is malformed.",
    "invalid": "The API key is not valid.",
    "expired": "The API key has expired.",
    "revoked": "The API key has been revoked.",
    "scope": "The API key lacks the scope this endpoint needs.",
}


class KeyError_(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(REASONS[reason])
        self.reason = reason
        self.message = REASONS[reason]


@dataclass(frozen=True)
class VerifiedKey:
    """What the proxy needs about a key, frozen so it can be cached and shared."""

    id: str
    org_id: str
    org_slug: str
    name: str
    prefix: str
    scopes: frozenset[str]
    tags: frozenset[str]
    allowed_server_ids: frozenset[str]
    created_by_id: int | None
    expires_at: datetime | None
    role: str | None = None


def bearer_token(header_value: str | None) -> str | None:
    if not header_value:
        return None
    scheme, _, token = header_value.strip().partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def _load(prefix: str) -> tuple[Any, VerifiedKey] | None:
    from governance.models import Membership
    from governance.selectors import unscoped_api_key_by_prefix

    key = unscoped_api_key_by_prefix(prefix=prefix)
    if key is None:
        return None
    role = None
    if key.created_by_id is not None:
        role = (
            Membership.objects.filter(org_id=key.org_id, user_id=key.created_by_id)
            .values_list("role", flat=True)
            .first()
        )
    verified = VerifiedKey(
        id=str(key.id),
        org_id=str(key.org_id),
        org_slug=key.org.slug,
        name=key.name,
        prefix=key.prefix,
        scopes=frozenset(key.scopes),
        tags=frozenset(key.tags or ()),
        allowed_server_ids=frozenset(
            str(pk) for pk in key.allowed_servers.values_list("pk", flat=True)
        ),
        created_by_id=key.created_by_id,
        expires_at=key.expires_at,
        role=role,
    )
    return key, verified


def _check_state(key: Any, secret: str) -> None:
    if not crypto.verify_secret(key.salt, secret, key.secret_hash):
        raise KeyError_("invalid")
    if key.revoked_at is not None:
        raise KeyError_("revoked")
    if key.expires_at is not None and key.expires_at <= timezone.now():
        raise KeyError_("expired")


def verify_key_sync(token: str | None) -> tuple[Any, VerifiedKey]:
    """Verify against the database (REST API: always fresh). Returns (ApiKey, VerifiedKey)."""
    if not token:
        raise KeyError_("missing")
    parts = crypto.split_api_key(token)
    if parts is None:
        raise KeyError_("malformed")
    loaded = _load(parts[0])
    if loaded is None:
        # Spend the same hashing work as a real check so timing does not reveal prefixes.
        crypto.verify_secret("0" * 32, parts[1], "0" * 64)
        raise KeyError_("invalid")
    _check_state(loaded[0], parts[1])
    return loaded


def touch_last_used(key_id: str) -> None:
    from governance.models import ApiKey

    ApiKey.objects.filter(pk=key_id).update(last_used_at=timezone.now())


@dataclass
class _Entry:
    salt: str
    secret_hash: str
    revoked: bool
    verified: VerifiedKey
    loaded_at: float


class AsyncKeyVerifier:
    """In-process TTL cache in front of the database for the proxy hot path.

    Revocation reaches every process through a hot-state flag notification (the listener calls
    `invalidate`); the TTL is the safety net if a notification is missed.
    """

    def __init__(self, *, ttl_s: float = 30.0, max_entries: int = 50_000) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._cache: dict[str, _Entry | None] = {}
        self._loaded_at: dict[str, float] = {}
        self._locks: dict[str, asyncio.Lock] = {}

    def invalidate(self, prefix: str | None = None) -> None:
        if prefix is None:
            self._cache.clear()
            self._loaded_at.clear()
        else:
            self._cache.pop(prefix, None)
            self._loaded_at.pop(prefix, None)

    async def _fetch(self, prefix: str) -> _Entry | None:
        from asgiref.sync import sync_to_async

        def load() -> _Entry | None:
            from django.db import connection

            # Worker threads live outside Django's request cycle: close the connection here
            # or it stays open for the life of the thread.
            try:
                loaded = _load(prefix)
            finally:
                connection.close()
            if loaded is None:
                return None
            key, verified = loaded
            return _Entry(
                key.salt, key.secret_hash, key.revoked_at is not None, verified, time.monotonic()
            )

        return await sync_to_async(load, thread_sensitive=False)()

    async def verify(self, token: str | None) -> VerifiedKey:
        if not token:
            raise KeyError_("missing")
        parts = crypto.split_api_key(token)
        if parts is None:
            raise KeyError_("malformed")
        prefix, secret = parts
        now = time.monotonic()
        loaded_at = self._loaded_at.get(prefix)
        if loaded_at is None or now - loaded_at > self.ttl_s:
            lock = self._locks.setdefault(prefix, asyncio.Lock())
            async with lock:
                loaded_at = self._loaded_at.get(prefix)
                if loaded_at is None or time.monotonic() - loaded_at > self.ttl_s:
                    if len(self._cache) >= self.max_entries:
                        self._cache.clear()
                        self._loaded_at.clear()
                    self._cache[prefix] = await self._fetch(prefix)
                    self._loaded_at[prefix] = time.monotonic()
            self._locks.pop(prefix, None)
        entry = self._cache.get(prefix)
        if entry is None:
            crypto.verify_secret("0" * 32, secret, "0" * 64)
            raise KeyError_("invalid")
        if not crypto.verify_secret(entry.salt, secret, entry.secret_hash):
            raise KeyError_("invalid")
        if entry.revoked:
            raise KeyError_("revoked")
        expires = entry.verified.expires_at
        if expires is not None and expires <= timezone.now():
            raise KeyError_("expired")
        return entry.verified


_verifier: AsyncKeyVerifier | None = None


def get_verifier() -> AsyncKeyVerifier:
    global _verifier
    if _verifier is None:
        from django.conf import settings

        _verifier = AsyncKeyVerifier(ttl_s=settings.IGRIS_KEY_CACHE_TTL_S)
    return _verifier


def announce_key_change(prefix: str) -> None:
    """Called after a revocation commits: evict here, and tell other processes."""
    if _verifier is not None:
        _verifier.invalidate(prefix)
    from governance.hotstate.sync import publish_flag_sync

    publish_flag_sync(KEY_FLAG_PREFIX + prefix, str(time.time()), ttl_s=3600)
