"""`POST /api/v1/ingest/<provider>`: events from other gateways into the audit log.

Authentication, one of:
- `X-Igris-Source: <source id>` with `X-Igris-Signature: t=<unix>,v1=<hex HMAC-SHA256 of
  "<t>.<raw body>">` made with that source's secret (governance/ingest_signing.py); older than
  5 minutes or more than 5 minutes ahead, malformed, or wrong: 401 (an id no source has: 401
  `source_unknown`). A signed request is accepted once: the same request delivered again while
  its signature is valid stores nothing and gets 409 `replayed` (unless it carries an
  Idempotency-Key, which answers a repeat with the first answer);
- `Authorization: Bearer ig_…` with scope `ingest`, for senders that cannot sign (Cloudflare
  Logpush and Datadog custom destinations can set a header, not compute an HMAC); an address
  whose keys keep failing gets 429 with Retry-After (governance.keys.BadKeyGuard).
The organisation is the credential's; nothing in the body can name another one.

Limits: 5 MiB and 1,000 items per request (after decompression too; `Content-Encoding: gzip` is
read); larger: 413. Each item is validated on its own: the answer is 200 `{"accepted": [indexes],
"rejected": [{"index", "reason"}]}` (plus OTLP's `partialSuccess` for `otlp`), and the accepted
items are stored together in one transaction; when none is valid: 422, nothing stored.
`Idempotency-Key` (1-255 visible ASCII characters) makes a retry safe for 24 hours: the same key
with the same body gets the first answer again (`Idempotent-Replayed: true`) and stores nothing;
with another body, 422; while the first is still being processed, 409. Errors are problem
details (RFC 9457, `application/problem+json`) with a stable `code`.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from django.core.cache import cache
from django.http import HttpRequest, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from compliance.ingest import MAX_BODY_BYTES, PROVIDERS, providers
from compliance.ingest.items import IngestItem, PayloadError, Rejected, gunzip
from compliance.ingest.services import ingest_batch
from governance import ingest_signing as signing
from governance.api.errors import PROBLEM_CONTENT_TYPE, problem_body
from governance.drf import request_address
from governance.keys import (
    KeyAttemptsBlocked,
    KeyError_,
    VerifiedKey,
    touch_last_used,
    verify_bearer_sync,
)
from governance.models import IngestSource, Scope
from governance.services.ingest_sources import ingest_source_secret

log = logging.getLogger("igris.ingest")

IDEMPOTENCY_TTL_S = 24 * 3600
IDEMPOTENCY_LOCK_S = 60
IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
SIGNATURE_FAILURES = {
    "signature_missing": "Sign the request: X-Igris-Signature: t=<unix>,v1=<hex HMAC-SHA256>.",
    "signature_malformed": "X-Igris-Signature must read t=<unix seconds>,v1=<64 hex digits>.",
    "signature_expired": "The signature's timestamp is more than 5 minutes from now.",
    "signature_invalid": "The signature does not match this source's secret.",
}
BEARER = {"WWW-Authenticate": 'Bearer realm="igris"'}


class _Refused(Exception):
    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


@dataclass(frozen=True)
class _Credential:
    source_or_key: IngestSource | VerifiedKey
    name: str  # "source:<id>" or "key:<id>": what idempotency keys are scoped to
    # A signed request: the cache key that remembers its signature while it could be replayed,
    # and for how long (until its timestamp leaves the tolerance window).
    replay_key: str | None = None
    replay_ttl_s: int = 0


def _problem(status: int, code: str, detail: str, **extra: Any) -> JsonResponse:
    headers = extra.pop("headers", None)
    response = JsonResponse(
        problem_body(status, code, detail, **extra),
        status=status,
        content_type=PROBLEM_CONTENT_TYPE,
    )
    for name, value in (headers or {}).items():
        response[name] = value
    return response


@csrf_exempt  # machine-to-machine: authenticated by signature or key, never by a cookie
def ingest_view(request: HttpRequest, provider: str) -> JsonResponse:
    if request.method != "POST":
        return _problem(405, "method_not_allowed", "Use POST.", headers={"Allow": "POST"})
    if provider not in PROVIDERS:
        return _problem(
            404, "unknown_provider", f"No provider '{provider[:50]}'; use {', '.join(PROVIDERS)}."
        )
    try:
        raw = _read_body(request)
        credential = _authenticate(request, raw, provider)
        if credential.replay_key is None or "Idempotency-Key" in request.headers:
            # With an Idempotency-Key a repeat is answered with the first answer and stores
            # nothing (_idempotent), so the signature need not be remembered as well.
            return _idempotent(request, provider, raw, credential)
        return _once(request, provider, raw, credential)
    except _Refused as refused:
        return _problem(refused.status, refused.code, refused.detail, **refused.extra)


def _once(request: HttpRequest, provider: str, raw: bytes, credential: _Credential) -> JsonResponse:
    """A signed request is accepted once: the signature stays valid for the tolerance window,
    so a captured request could otherwise be delivered again and stored twice (items without an
    id are not deduplicated). A request that stored nothing is forgotten, so its sender may
    retry it as it was."""
    assert credential.replay_key is not None
    if not cache.add(credential.replay_key, "1", credential.replay_ttl_s):
        raise _Refused(
            409,
            "replayed",
            "This signed request was already received; sign each delivery with a new timestamp.",
        )
    stored = False
    try:
        response = _idempotent(request, provider, raw, credential)
        stored = response.status_code < 300
        return response
    finally:
        if not stored:
            cache.delete(credential.replay_key)


def _read_body(request: HttpRequest) -> bytes:
    declared = request.META.get("CONTENT_LENGTH") or ""
    if declared and (not declared.isdigit() or int(declared) > MAX_BODY_BYTES):
        raise _Refused(413, "body_too_large", f"A request holds at most {MAX_BODY_BYTES} bytes.")
    # Read from the stream, not `request.body` (bounded by DATA_UPLOAD_MAX_MEMORY_SIZE, set from
    # IGRIS_API_MAX_BODY_BYTES), so this limit holds whatever that setting is.
    raw = request.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise _Refused(413, "body_too_large", f"A request holds at most {MAX_BODY_BYTES} bytes.")
    return raw


def _unscoped_source(source_id: str) -> IngestSource | None:
    """The source a request names, whatever its organisation (the signature then proves it)."""
    try:
        pk = uuid.UUID(source_id.strip())
    except ValueError:
        return None
    return IngestSource.objects.filter(pk=pk).first()


def _authenticate(request: HttpRequest, raw: bytes, provider: str) -> _Credential:
    source_id = request.headers.get(signing.SOURCE_HEADER)
    signature = request.headers.get(signing.SIGNATURE_HEADER)
    if source_id is not None or signature is not None:
        if not source_id:
            raise _Refused(
                401,
                "unauthenticated",
                f"Name the source with {signing.SOURCE_HEADER}: <source id>.",
                reason="source_missing",
            )
        source = _unscoped_source(source_id)
        if source is None:
            # Source ids are random UUIDs (122 bits): saying one does not exist tells a guesser
            # nothing, and tells a sender with a typo what is wrong.
            shown = re.sub(r"[^\w.-]", "?", source_id.strip())[:64]
            raise _Refused(
                401,
                "unauthenticated",
                f"No ingest source has the id '{shown}': {signing.SOURCE_HEADER} takes the "
                "source's id, shown when it was created and in /api/v1/ingest-sources/.",
                reason="source_unknown",
            )
        secret = ingest_source_secret(source)
        now = time.time()
        failure = signing.verify(signature, raw, [secret], now=now)
        if failure is not None:
            raise _Refused(401, "unauthenticated", SIGNATURE_FAILURES[failure], reason=failure)
        parsed = signing.parse(signature or "")
        assert parsed is not None
        timestamp = parsed[0]
        # The signature this request's timestamp and body call for: extra or reordered v1
        # entries in the header do not make a replay look new.
        expected = signing.signature(secret, timestamp, raw)
        replay_key = f"ingest:signed:{source.id}:{expected}"
        replay_ttl = max(1, math.ceil(timestamp + signing.TOLERANCE_S - now) + 1)
        if source.provider != provider:
            raise _Refused(
                403,
                "provider_mismatch",
                f"This source sends {source.provider} events: post to "
                f"/api/v1/ingest/{source.provider}.",
            )
        return _Credential(source, f"source:{source.id}", replay_key, replay_ttl)
    header = request.headers.get("Authorization")
    if not header:
        raise _Refused(
            401,
            "unauthenticated",
            "Sign the request (X-Igris-Source, X-Igris-Signature) or send "
            "'Authorization: Bearer ig_…' with a key that has the ingest scope.",
            reason="missing",
            headers=BEARER,
        )
    try:
        _key, verified = verify_bearer_sync(header, request_address(request))
    except KeyAttemptsBlocked as exc:
        raise _throttled(exc.wait_s) from None
    except KeyError_ as exc:
        raise _Refused(401, "unauthenticated", exc.message, reason=exc.reason) from None
    if Scope.INGEST not in verified.scopes:
        raise _Refused(
            403,
            "permission_denied",
            "This API key lacks the ingest scope.",
            reason="scope",
        )
    touch_last_used(verified.id)
    return _Credential(verified, f"key:{verified.id}")


def _throttled(wait_s: float) -> _Refused:
    retry = max(1, math.ceil(wait_s))
    return _Refused(
        429,
        "throttled",
        f"Too many failed API key attempts from this address: retry in {retry} s.",
        retry_after=retry,
        headers={"Retry-After": str(retry)},
    )


def _idempotent(
    request: HttpRequest, provider: str, raw: bytes, credential: _Credential
) -> JsonResponse:
    key = request.headers.get("Idempotency-Key")
    if key is None:
        status, body = _process(request, provider, raw, credential, batch_key=None)
        return _answer(status, body)
    if not IDEMPOTENCY_KEY.match(key):
        raise _Refused(
            400,
            "invalid_idempotency_key",
            "Idempotency-Key must be 1-255 visible ASCII characters.",
        )
    scope = f"{credential.name}|{hashlib.sha256(key.encode()).hexdigest()}"
    cache_key = f"ingest:idempotency:{scope}"
    digest = hashlib.sha256(raw).hexdigest()
    stored = cache.get(cache_key)
    if stored is None:
        if not cache.add(f"{cache_key}:lock", "1", IDEMPOTENCY_LOCK_S):
            raise _Refused(
                409,
                "idempotency_key_in_use",
                "A request with this Idempotency-Key is still being processed; retry later.",
            )
        try:
            status, body = _process(request, provider, raw, credential, batch_key=scope)
            stored = {"digest": digest, "status": status, "body": body}
            cache.set(cache_key, stored, IDEMPOTENCY_TTL_S)
        finally:
            cache.delete(f"{cache_key}:lock")
        return _answer(status, body)
    if stored["digest"] != digest:
        raise _Refused(
            422,
            "idempotency_key_reused",
            "This Idempotency-Key was used with another body in the last 24 hours.",
        )
    response = _answer(stored["status"], stored["body"])
    response["Idempotent-Replayed"] = "true"
    return response


def _answer(status: int, body: dict[str, Any]) -> JsonResponse:
    kind = PROBLEM_CONTENT_TYPE if status >= 400 else "application/json"
    return JsonResponse(body, status=status, content_type=kind)


def _decoded(raw: bytes, encoding: str | None) -> bytes:
    coding = (encoding or "").strip().lower()
    if coding in ("gzip", "x-gzip", "deflate") or (not coding and raw[:2] == b"\x1f\x8b"):
        return gunzip(raw, what="The body")
    if coding in ("", "identity"):
        return raw
    raise PayloadError(415, "unsupported_encoding", f"Content-Encoding {coding!r} is not read.")


def _process(
    request: HttpRequest,
    provider: str,
    raw: bytes,
    credential: _Credential,
    *,
    batch_key: str | None,
) -> tuple[int, dict[str, Any]]:
    """(status, body) for a request that passed authentication: a deterministic function of the
    body, so an idempotent replay can answer with it."""
    try:
        content_type = (request.content_type or "").lower()
        if provider == "otlp" and "protobuf" in content_type:
            raise PayloadError(
                415, "unsupported_media_type", "Send OTLP/HTTP as JSON (application/json)."
            )
        batch = providers.parse(
            provider, _decoded(raw, request.headers.get("Content-Encoding")), now=timezone.now()
        )
    except PayloadError as exc:
        return exc.status, problem_body(exc.status, exc.code, exc.detail)
    if batch.control:
        return 200, {"accepted": [], "rejected": []}
    accepted = [i for i, item in enumerate(batch.items) if isinstance(item, IngestItem)]
    rejected = [
        {"index": i, "reason": item.reason}
        for i, item in enumerate(batch.items)
        if isinstance(item, Rejected)
    ]
    if not batch.items:
        return 422, problem_body(422, "empty_batch", "The request holds no items.")
    if not accepted:
        return 422, problem_body(
            422,
            "no_valid_items",
            f"None of the {len(rejected)} items is valid; nothing was stored.",
            accepted=[],
            rejected=rejected,
        )
    items = [item for item in batch.items if isinstance(item, IngestItem)]
    ids = ingest_batch(
        source_or_key=credential.source_or_key,
        provider=provider,
        items=items,
        batch_key=batch_key,
    )
    log.info("ingested %d %s events (%d rejected)", len(ids), provider, len(rejected))
    body: dict[str, Any] = {"accepted": accepted, "rejected": rejected}
    if provider == "otlp" and rejected:
        # OTLP/HTTP partial success (ExportTraceServiceResponse / ExportLogsServiceResponse).
        kinds = [batch.kinds[i] for i, item in enumerate(batch.items) if isinstance(item, Rejected)]
        body["partialSuccess"] = {
            "rejectedSpans": kinds.count("span"),
            "rejectedLogRecords": kinds.count("log"),
            "errorMessage": f"{len(rejected)} of {len(batch.items)} items rejected, first: "
            f"{rejected[0]['reason']}",
        }
    return 200, body
