"""Ingestion of events recorded by other AI gateways and collectors (`/api/v1/ingest/<provider>`).

The package is pure where it can be: `providers` and `otlp` map documented payload shapes to
audit items; only `views` and `services` touch Django. Stored items go through the audit pipeline
(the outbox, then the audit writer's hash chain), like every other event, from `services`.

It lives in compliance because it turns outside records into audit events. What the governance
core needs stays there: the `IngestSource` model and its services
(`governance.services.ingest_sources`) and the signature scheme of a source's secret
(`governance.ingest_signing`), which the console shows.

This module holds what other layers may reuse without pulling in Django: the provider names, the
batch limits and the destructive tool-name check. `proxy/anomalies.py` could import
`DESTRUCTIVE_TOOL_NAME` / `is_destructive_name` from here instead of keeping its own copy.
"""

from __future__ import annotations

import re

# The providers accepted at /api/v1/ingest/<provider>; `IngestSource.provider` uses the same names.
PROVIDERS: tuple[str, ...] = (
    "generic",
    "otlp",
    "portkey",
    "helicone",
    "datadog",
    "cloudflare",
    "cloudwatch",
)

# Documented limits of one request: at most this many items and this many bytes (compressed or
# not, before and after decoding). Larger requests get 413 and store nothing.
MAX_ITEMS = 1000
MAX_BODY_BYTES = 5 * 1024 * 1024

# Tool names that announce an irreversible action: delete_*, drop-*, truncate.*, destroy, purge_*.
DESTRUCTIVE_TOOL_NAME = re.compile(
    r"^(delete|drop|truncate|destroy|purge)([_\-.]|$)", re.IGNORECASE
)


def is_destructive_name(name: object) -> bool:
    """Whether a tool name matches the destructive pattern (anomaly input, never a verdict)."""
    return isinstance(name, str) and DESTRUCTIVE_TOOL_NAME.match(name) is not None
