"""Idempotency-Key on creating POSTs (the IETF httpapi "Idempotency-Key" header draft).

The first successful (2xx) answer to a key is kept for 24 hours in the shared cache, under the
organisation, the principal (API key or user), the method, the path and the key, with a hash of
the request body. The same key with the same body replays that answer (header
`Idempotent-Replayed: true`) and changes nothing; the same key with another body is a 422; a
request arriving while the first is still running is a 409. Error answers are not kept, so a
client may fix its request and retry with the same key.

Stored answers are encrypted (AES-GCM, the upstream-credential key): the answer to creating an
API key holds its secret, which must not sit in the cache in clear.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from typing import Any

from django.core.cache import cache
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.encoders import JSONEncoder

from governance import crypto
from governance.api.errors import ApiProblem
from governance.drf import ApiPrincipal

HEADER = "Idempotency-Key"
TTL_S = 24 * 3600
LOCK_TTL_S = 60
MAX_KEY_LENGTH = 255


def _principal_id(principal: ApiPrincipal) -> str:
    if principal.key is not None:
        return f"key:{principal.key.id}"
    return f"user:{getattr(principal.user, 'pk', None)}"


def _body_hash(data: Any) -> str:
    text = json.dumps(data, cls=JSONEncoder, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _valid(key: str) -> bool:
    return 0 < len(key) <= MAX_KEY_LENGTH and all(" " <= c <= "~" for c in key)


def idempotent(handler: Callable[..., Response]) -> Callable[..., Response]:
    """Decorate a view's `post`: honour Idempotency-Key when the client sends one."""

    @functools.wraps(handler)
    def wrapper(view: Any, request: Request, *args: Any, **kwargs: Any) -> Response:
        key = request.headers.get(HEADER)
        if key is None:
            return handler(view, request, *args, **kwargs)
        if not _valid(key):
            raise ApiProblem(
                400,
                "invalid",
                f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable ASCII characters.",
                errors=[{"field": HEADER, "message": "not a valid key", "code": "invalid"}],
            )
        principal: ApiPrincipal = request.auth
        scope = "|".join(
            [str(principal.org.pk), _principal_id(principal), request.method or "", request.path]
        )
        digest = hashlib.sha256(f"{scope}|{key}".encode()).hexdigest()
        cache_key, lock_key = f"idem:{digest}", f"idem-lock:{digest}"
        body_hash = _body_hash(request.data)
        stored = cache.get(cache_key)
        if stored is not None:
            return _replay(stored, cache_key, body_hash)
        if not cache.add(lock_key, 1, timeout=LOCK_TTL_S):
            raise ApiProblem(
                409,
                "idempotency_in_progress",
                f"A request with this {HEADER} is still being processed; retry later.",
            )
        try:
            response = handler(view, request, *args, **kwargs)
            if 200 <= response.status_code < 300:
                record = json.dumps(
                    {
                        "hash": body_hash,
                        "status": response.status_code,
                        "data": response.data,
                        "location": response.get("Location"),
                    },
                    cls=JSONEncoder,
                )
                cache.set(cache_key, crypto.encrypt(record, context=cache_key), timeout=TTL_S)
            return response
        finally:
            cache.delete(lock_key)

    wrapper.idempotent = True  # type: ignore[attr-defined]
    return wrapper


def _replay(stored: bytes, cache_key: str, body_hash: str) -> Response:
    record = json.loads(crypto.decrypt(stored, context=cache_key))
    if record["hash"] != body_hash:
        raise ApiProblem(
            422,
            "idempotency_key_reused",
            f"This {HEADER} was already used with a different request body.",
        )
    headers = {"Idempotent-Replayed": "true"}
    if record.get("location"):
        headers["Location"] = record["location"]
    return Response(record["data"], status=record["status"], headers=headers)
