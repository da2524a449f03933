"""API key verification: a sync path for the REST API and a cached async path for the proxy.

Failures carry a reason code (`missing`, `malformed`, `invalid`, `expired`, `revoked`) that is
safe to show: `invalid` covers both "no such prefix" and "wrong secret" so nothing helps guessing.
Repeated failures from one address are throttled (`BadKeyGuard`), whichever door they knock on.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.utils import timezone

from governance import crypto
from governance.runtime.hotstate.base import RateCheck, RateResult

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
    from governance.selectors.keys import unscoped_api_key_by_prefix

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


# How long "no key has this prefix" is believed. A creation is announced like a revocation, but
# a process that misses the notification would otherwise refuse a brand-new key for a whole TTL.
# Short is cheap: a miss is one indexed lookup, an unknown random prefix never hits the cache
# anyway, and an address repeating a bad key is throttled by BadKeyGuard.
NEGATIVE_TTL_S = 1.0


class AsyncKeyVerifier:
    """In-process TTL cache in front of the database for the proxy hot path.

    Revocation and creation reach every process through a hot-state flag notification (the
    listener calls `invalidate`); the TTL is the safety net if a notification is missed, and a
    miss ("no such key") is kept for `negative_ttl_s` only.

    A refresh that fails because the database cannot be reached keeps the key's last loaded
    state for up to `max_stale_s` (IGRIS_PROXY_MAX_STALE_S), retried about once a second, so
    the proxy keeps serving through a database outage; while one refresh is in flight, other
    calls use that state instead of waiting for it.
    """

    def __init__(
        self,
        *,
        ttl_s: float = 30.0,
        max_entries: int = 50_000,
        max_stale_s: float = 900.0,
        negative_ttl_s: float = NEGATIVE_TTL_S,
    ) -> None:
        self.ttl_s = ttl_s
        self.negative_ttl_s = min(negative_ttl_s, ttl_s)
        self.max_entries = max_entries
        self.max_stale_s = max_stale_s
        self._cache: dict[str, _Entry | None] = {}
        self._loaded_at: dict[str, float] = {}
        # One lock per (event loop, prefix): an asyncio.Lock binds to the loop that first waits
        # on it, and the verifier's cache (plain data) is shared by every loop of the process.
        self._locks: dict[tuple[asyncio.AbstractEventLoop, str], asyncio.Lock] = {}

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

    def _stale_usable(self, prefix: str) -> bool:
        entry = self._cache.get(prefix)
        return entry is not None and time.monotonic() - entry.loaded_at <= self.max_stale_s

    async def _refresh(self, prefix: str) -> None:
        from django.db import InterfaceError, OperationalError

        try:
            fetched = await self._fetch(prefix)
        except (OperationalError, InterfaceError):
            if not self._stale_usable(prefix):
                raise
            log.warning("database unavailable; using the cached state of key %s", prefix)
            # Checked again in about a second rather than after a whole TTL.
            self._loaded_at[prefix] = time.monotonic() - self.ttl_s + min(self.ttl_s, 1.0)
            return
        if len(self._cache) >= self.max_entries:
            self._cache.clear()
            self._loaded_at.clear()
        self._cache[prefix] = fetched
        self._loaded_at[prefix] = time.monotonic()

    def _expired(self, prefix: str) -> bool:
        loaded_at = self._loaded_at.get(prefix)
        if loaded_at is None:
            return True
        ttl = self.ttl_s if self._cache.get(prefix) is not None else self.negative_ttl_s
        return time.monotonic() - loaded_at > ttl

    async def verify(self, token: str | None) -> VerifiedKey:
        if not token:
            raise KeyError_("missing")
        parts = crypto.split_api_key(token)
        if parts is None:
            raise KeyError_("malformed")
        prefix, secret = parts
        if self._expired(prefix):
            lock_key = (asyncio.get_running_loop(), prefix)
            lock = self._locks.setdefault(lock_key, asyncio.Lock())
            if not (lock.locked() and self._stale_usable(prefix)):
                async with lock:
                    if self._expired(prefix):
                        await self._refresh(prefix)
                self._locks.pop(lock_key, None)
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

        _verifier = AsyncKeyVerifier(
            ttl_s=settings.IGRIS_KEY_CACHE_TTL_S, max_stale_s=settings.IGRIS_PROXY_MAX_STALE_S
        )
    return _verifier


def announce_key_change(prefix: str) -> None:
    """Called after a revocation commits: evict here, and tell other processes."""
    if _verifier is not None:
        _verifier.invalidate(prefix)
    from governance.runtime.hotstate.sync import publish_flag_sync

    publish_flag_sync(KEY_FLAG_PREFIX + prefix, str(time.time()), ttl_s=3600)


# --- failed authentications (brute force) ------------------------------------------------------

BAD_KEY_RATE_KEY = "badkey:"
MAX_BLOCKED_ADDRESSES = 100_000

log = logging.getLogger("igris.keys")


def client_address(peer: str | None) -> str:
    """The caller's address as the ASGI scope gives it. igris_project.forwarded has already put
    the client behind a trusted proxy there (IGRIS_TRUSTED_PROXIES) and dropped X-Forwarded-*
    from anyone else, so no header is read here."""
    return peer[:64] if peer else "unknown"


class BadKeyGuard:
    """Per-address budget of failed API key authentications (IGRIS_BAD_KEY_RATE_PER_MIN).

    Each failure costs one hot-state round trip (a GCRA limit, shared by every process); a
    success costs none. Once the shared limit refuses an address, this process remembers it
    until the limit would let the address try again, and answers 429 to every failed key from
    that address without counting it again. A valid key is always let through: many clients
    share an address behind a NAT, and one broken client must not lock out the rest. Telling a
    right guess from a wrong one gives nothing away, since a key's secret carries 240 random
    bits (governance.crypto): the budget protects igris from floods, not keys from guessing.
    Another process learns of the block on that address's next failure there.
    """

    def __init__(self, *, limit_per_min: int) -> None:
        self.limit_per_min = limit_per_min
        self._blocked: dict[str, float] = {}  # address -> monotonic time the block ends

    def check(self, address: str) -> RateCheck:
        return RateCheck(key=BAD_KEY_RATE_KEY + address, limit=self.limit_per_min, period_s=60.0)

    def blocked_for(self, address: str) -> float | None:
        """Seconds until `address` may try a key again, or None; in memory, no I/O."""
        until = self._blocked.get(address)
        if until is None:
            return None
        left = until - time.monotonic()
        if left <= 0:
            self._blocked.pop(address, None)
            return None
        return left

    def record(self, address: str, result: RateResult) -> float | None:
        """Note the shared limit's verdict on a failure; the wait if the address is now over."""
        if result.allowed:
            return None
        wait = max(result.retry_after_s, 1.0)
        if len(self._blocked) >= MAX_BLOCKED_ADDRESSES:
            now = time.monotonic()
            self._blocked = {a: u for a, u in self._blocked.items() if u > now}
            if len(self._blocked) >= MAX_BLOCKED_ADDRESSES:
                self._blocked.clear()
        self._blocked[address] = time.monotonic() + wait
        # One line per block, not per refused attempt: the log must not amplify an attack.
        log.warning(
            "too many failed API key authentications from %s; refused for %.0f s", address, wait
        )
        return wait

    async def failed(self, hotstate: Any, address: str) -> float | None:
        """Count a failure of `address` (one round trip); the wait if it is over its budget.

        If the hot state cannot be reached the failure is answered as a failure (None): the
        budget protects igris, and refusing valid callers for it would be worse."""
        try:
            result = await hotstate.rate_limit_many([self.check(address)])
        except Exception:
            log.warning("could not count a failed API key authentication from %s", address)
            return None
        return self.record(address, result[0])

    def failed_sync(self, address: str) -> float | None:
        """`failed` for synchronous callers (REST API, ingestion)."""
        from governance.runtime.hotstate.sync import rate_limit_sync

        try:
            result = rate_limit_sync(self.check(address))
        except Exception:
            log.warning("could not count a failed API key authentication from %s", address)
            return None
        return self.record(address, result)


_guard: BadKeyGuard | None = None


class KeyAttemptsBlocked(Exception):
    """The caller's address is over its budget of failed key attempts: answer 429."""

    def __init__(self, wait_s: float) -> None:
        super().__init__(f"retry after {wait_s:.0f} s")
        self.wait_s = wait_s


def verify_bearer_sync(header: str, address: str) -> tuple[Any, VerifiedKey]:
    """The key of an `Authorization` header, for synchronous callers (REST API, ingestion),
    counted against `address`'s budget of failed attempts. Returns (ApiKey, VerifiedKey);
    raises KeyAttemptsBlocked, or KeyError_ (for a header that is not `Bearer <key>`, its message
    says how to send one)."""
    guard = get_bad_key_guard()
    token = bearer_token(header)
    try:
        if token is None:
            raise KeyError_("malformed")
        return verify_key_sync(token)
    except KeyError_ as exc:
        # Only failures are throttled; a valid key always gets through (BadKeyGuard).
        wait = guard.blocked_for(address)
        if wait is None:
            wait = guard.failed_sync(address)
        if wait is not None:
            raise KeyAttemptsBlocked(wait) from None
        if token is None:
            exc.message = "Use 'Authorization: Bearer ig_…'."
        raise


def reset() -> None:
    """Forget the process's key cache and its record of blocked addresses (tests, and a process
    whose settings changed)."""
    global _verifier, _guard
    _verifier = None
    _guard = None


def get_bad_key_guard() -> BadKeyGuard:
    global _guard
    if _guard is None:
        from django.conf import settings

        _guard = BadKeyGuard(limit_per_min=settings.IGRIS_BAD_KEY_RATE_PER_MIN)
    return _guard
