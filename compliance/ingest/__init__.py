"""Ingestion of events recorded by other AI gateways and collectors (`/api/v1/ingest/<provider>`).

The package is pure where it can be: `providers` and `otlp` map documented payload shapes to
audit items; only `views` and `services` touch Django. Stored items go through the audit pipeline
(the outbox, then the audit writer's hash chain), like every other event, from `services`.

It lives in compliance because it turns outside records into audit events. What the governance
core needs stays there: the `IngestSource` model and its services
(`governance.services.ingest_sources`) and the signature scheme of a source's secret
(`governance.ingest_signing`), which the console shows.

This module holds the provider names and the batch limits. The destructive tool-name pattern is
`governance.destructive`, shared with the proxy's detector.
"""

from __future__ import annotations

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
