"""`X-Igris-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<raw body>">`.

The scheme of Stripe's webhook signatures: the timestamp is signed with the body so a captured
request cannot be replayed later than the tolerance, the HMAC covers the raw bytes as sent
(compressed or not, before any parsing), and several `v1=` entries may be sent. Comparisons are
constant-time. Pure: no Django.

The scheme belongs to an ingest source's secret, so it lives in the governance core beside
`IngestSource`: the console shows its headers, and `compliance.ingest` checks requests with it.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Sequence

SIGNATURE_HEADER = "X-Igris-Signature"
SOURCE_HEADER = "X-Igris-Source"
TOLERANCE_S = 300  # older than 5 minutes, or more than 5 minutes ahead: refused
MAX_HEADER = 1024
_HEX_SHA256 = re.compile(r"[0-9a-f]{64}")


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The hex HMAC-SHA256 of `<timestamp>.<body>` under `secret`."""
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The header value a sender puts in `X-Igris-Signature`."""
    return f"t={timestamp},v1={signature(secret, timestamp, body)}"


def parse(header: str) -> tuple[int, list[str]] | None:
    """(timestamp, [v1 signatures]) from the header, or None when it is malformed."""
    if len(header) > MAX_HEADER:
        return None
    timestamp: int | None = None
    signatures: list[str] = []
    for part in header.split(","):
        name, sep, value = part.strip().partition("=")
        if not sep:
            return None
        if name == "t":
            if not value.isdigit() or len(value) > 12:
                return None
            timestamp = int(value)
        elif name == "v1":
            candidate = value.strip().lower()
            if not _HEX_SHA256.fullmatch(candidate):
                return None
            signatures.append(candidate)
        # Other schemes (v0, future versions) are ignored, as Stripe's parser does.
    if timestamp is None or not signatures:
        return None
    return timestamp, signatures


def verify(header: str | None, body: bytes, secrets: Sequence[str], *, now: float) -> str | None:
    """None when one `v1` matches one of the secrets within the tolerance, else the failure:
    `signature_missing`, `signature_malformed`, `signature_expired` or `signature_invalid`."""
    if not header:
        return "signature_missing"
    parsed = parse(header)
    if parsed is None:
        return "signature_malformed"
    timestamp, candidates = parsed
    if abs(now - timestamp) > TOLERANCE_S:
        return "signature_expired"
    matched = False
    for secret in secrets:
        expected = signature(secret, timestamp, body)
        for candidate in candidates:
            # Every pair is compared, so the time taken does not tell which one matched.
            matched |= hmac.compare_digest(expected, candidate)
    return None if matched else "signature_invalid"
