"""Compliance data: the append-only audit log, its chain heads and signed checkpoints.

Audit rows hold plain ids, never foreign keys (DESIGN.md section 5): the table never cascades and
never blocks a delete elsewhere. Only the audit writer (`compliance.audit.writer`) inserts rows.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import UTC
from typing import Any, NoReturn

from django.db import models
from django.utils import timezone

from compliance.audit.chain import CHAINED_FIELDS, GENESIS
from compliance.observe.histogram import BUCKETS

# The columns a proxied tool call fills in (from the envelope's `data`); every other event type
# may fill them too when its data carries a value of the right type (e.g. `key_id`).
CALL_FIELDS: tuple[str, ...] = (
    "server_id",
    "server_slug",
    "session_id",
    "key_id",
    "method",
    "tool",
    "decision",
    "rule_id",
    "policy_version",
    "latency_ms",
    "upstream_ms",
    "upstream_status",
    "result",
    "request_bytes",
    "response_bytes",
    "args_digest",
    "arguments",
    "client_info",
    "protocol_version",
)


class AppendOnlyError(Exception):
    """An attempt to change or remove audit history through the ORM."""


class AppendOnlyQuerySet(models.QuerySet[Any]):
    """Reads and inserts only. The database refuses the same (triggers, migration 0002)."""

    def update(self, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: update() refused")

    def delete(self) -> NoReturn:  # type: ignore[override]
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: delete() refused")

    def bulk_update(self, objs: Any, fields: Any, batch_size: int | None = None) -> NoReturn:
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only: bulk_update() refused")

    def update_or_create(self, *args: Any, **kwargs: Any) -> NoReturn:
        raise AppendOnlyError(f"{self.model.__name__} rows are append-only")

    # A retention purge (delete whole segments up to a retained checkpoint, logging a
    # `segment_purged` event) would be the one `unscoped_...` path; not built yet.


class _AppendOnlyModel(models.Model):
    class Meta:
        abstract = True

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise AppendOnlyError(f"{type(self).__name__} rows are append-only: update refused")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        raise AppendOnlyError(f"{type(self).__name__} rows are append-only: delete refused")


class AuditEvent(_AppendOnlyModel):
    """One audited fact: a console/API state change or one proxied MCP call.

    `hash = sha256(prev_hash || canonical(every other column))` chains the organisation's events
    in `seq` order (see compliance/audit/chain.py for the exact encoding).
    """

    id = models.UUIDField(
        primary_key=True, default=uuid.uuid4, editable=False, help_text="The event envelope's id."
    )
    org_id = models.UUIDField(help_text="Organisation id (plain id, no foreign key).")
    seq = models.BigIntegerField(help_text="Per-organisation sequence, from 1, without gaps.")
    ts = models.DateTimeField(help_text="When it happened (from the envelope).")
    recorded_at = models.DateTimeField(help_text="When the audit writer stored it.")
    source = models.CharField(max_length=64, help_text="console, api, proxy, system, ingest:<x>")
    type = models.CharField(max_length=100)
    actor = models.JSONField()

    # NULL means "not in the envelope"; "" is a value the envelope carried (hence DJ001 noqa).
    server_id = models.UUIDField(null=True, blank=True)
    server_slug = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    session_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    key_id = models.UUIDField(null=True, blank=True)
    method = models.CharField(max_length=64, null=True, blank=True)  # noqa: DJ001
    tool = models.CharField(max_length=256, null=True, blank=True)  # noqa: DJ001
    decision = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    rule_id = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    policy_version = models.IntegerField(null=True, blank=True)
    latency_ms = models.FloatField(null=True, blank=True)
    upstream_ms = models.FloatField(null=True, blank=True)
    upstream_status = models.IntegerField(null=True, blank=True)
    result = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001
    request_bytes = models.BigIntegerField(null=True, blank=True)
    response_bytes = models.BigIntegerField(null=True, blank=True)
    args_digest = models.CharField(max_length=128, null=True, blank=True)  # noqa: DJ001
    arguments = models.JSONField(null=True, blank=True)
    client_info = models.JSONField(null=True, blank=True)
    protocol_version = models.CharField(max_length=32, null=True, blank=True)  # noqa: DJ001

    data = models.JSONField(
        default=dict, blank=True, help_text="The envelope's data minus the values kept in columns."
    )
    prev_hash = models.CharField(max_length=64, default=GENESIS)
    hash = models.CharField(max_length=64)

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["org_id", "seq"]
        constraints = [
            models.UniqueConstraint(fields=["org_id", "seq"], name="audit_event_unique_org_seq"),
            models.CheckConstraint(condition=models.Q(seq__gte=1), name="audit_event_seq_positive"),
        ]
        indexes = [
            models.Index(fields=["org_id", "ts"], name="audit_event_org_ts"),
            models.Index(fields=["org_id", "type"], name="audit_event_org_type"),
            # Session detail, live-feed session filters and policy replay read by session in seq
            # order; the other call filters are narrow enough once the time range applies.
            models.Index(fields=["org_id", "session_id", "seq"], name="audit_event_org_session"),
        ]

    def __str__(self) -> str:
        return f"{self.org_id} #{self.seq} {self.type}"

    def chain_dict(self) -> dict[str, Any]:
        """The values the hash covers, as stored."""
        return {name: getattr(self, name) for name in CHAINED_FIELDS}

    def as_envelope(self) -> dict[str, Any]:
        """The event as governance.events.Envelope shaped it, plus seq and hash."""
        return audit_envelope({**self.chain_dict(), "hash": self.hash})


def audit_envelope(values: Mapping[str, Any]) -> dict[str, Any]:
    """An audit event's column values as the envelope (what the live feed and API show)."""
    data = dict(values["data"])
    for name in CALL_FIELDS:
        value = values[name]
        if value is not None:
            data[name] = str(value) if isinstance(value, uuid.UUID) else value
    return {
        "id": str(values["id"]),
        "org_id": str(values["org_id"]),
        "seq": values["seq"],
        "type": values["type"],
        "source": values["source"],
        "ts": values["ts"].astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": values["actor"],
        "data": data,
        "hash": values["hash"],
    }


class ChainHead(models.Model):
    """The newest (seq, hash) of an organisation's chain; locked while a batch is written."""

    org_id = models.UUIDField(primary_key=True)
    seq = models.BigIntegerField(default=0)
    hash = models.CharField(max_length=64, default=GENESIS)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["org_id"]

    def __str__(self) -> str:
        return f"{self.org_id} @ {self.seq}"


class Checkpoint(_AppendOnlyModel):
    """A signed statement "organisation X's chain had hash H at seq N" (Ed25519).

    Signed text: compliance.audit.chain.checkpoint_text. It is what makes silent truncation of
    the tail detectable, once copies live outside this database.
    """

    id = models.BigAutoField(primary_key=True)
    org_id = models.UUIDField()
    seq = models.BigIntegerField()
    hash = models.CharField(max_length=64)
    created_at = models.DateTimeField()
    key_id = models.CharField(max_length=16, help_text="SHA-256(public key), first 16 hex digits.")
    signature = models.CharField(max_length=128, help_text="Ed25519 signature, hex.")

    objects = AppendOnlyQuerySet.as_manager()

    class Meta:
        ordering = ["org_id", "-seq"]
        indexes = [models.Index(fields=["org_id", "seq"], name="audit_checkpoint_org_seq")]

    def __str__(self) -> str:
        return f"{self.org_id} checkpoint @ {self.seq}"


# --- observe rollups ----------------------------------------------------------------------------
#
# What the /observe/ dashboard reads instead of the audit table (compliance/observe/). The audit
# writer adds each batch's tool calls to them in the transaction that stores the batch
# (compliance/observe/rollups.py), so they always agree with the stored events. They are derived
# data, not history: unlike AuditEvent they are updated in place.


class CallRollup(models.Model):
    """Counters of the tool calls of one (org, time bucket, server, tool, key, decision, rule).

    "" stands for "none" in the text dimensions (a unique constraint treats NULLs as distinct).
    `key_id` is text for the same reason: "" is a call without an API key (a console user, an
    ingested event).
    """

    org_id = models.UUIDField()
    bucket = models.DateTimeField(help_text="Start of the bucket (UTC), from the events' ts.")
    server_slug = models.CharField(max_length=64, default="", blank=True)
    tool = models.CharField(max_length=256, default="", blank=True)
    key_id = models.CharField(max_length=36, default="", blank=True)
    decision = models.CharField(max_length=32, default="", blank=True)
    rule_id = models.CharField(max_length=128, default="", blank=True)
    calls = models.IntegerField(default=0)
    denials = models.IntegerField(default=0)
    alerts = models.IntegerField(default=0)
    errors = models.IntegerField(default=0)
    destructive = models.IntegerField(default=0)
    latency_ms_sum = models.FloatField(default=0.0)
    upstream_ms_sum = models.FloatField(default=0.0)
    upstream_calls = models.IntegerField(default=0)

    DIMENSIONS = ("org_id", "bucket", "server_slug", "tool", "key_id", "decision", "rule_id")
    MEASURES = (
        "calls",
        "denials",
        "alerts",
        "errors",
        "destructive",
        "latency_ms_sum",
        "upstream_ms_sum",
        "upstream_calls",
    )

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return f"{self.org_id} {self.bucket:%Y-%m-%d %H:%M} {self.server_slug}/{self.tool}"


class CallMinute(CallRollup):
    """Per-minute rollup: the 15-minute and 1-hour windows read it."""

    class Meta:
        ordering = ["org_id", "bucket"]
        constraints = [
            # Also the index of every read: org, then a range of buckets.
            models.UniqueConstraint(fields=list(CallRollup.DIMENSIONS), name="call_minute_key"),
        ]


class CallHour(CallRollup):
    """Per-hour rollup: the 24-hour and 7-day windows read it (sixty times fewer rows at volume)."""

    class Meta:
        ordering = ["org_id", "bucket"]
        constraints = [
            models.UniqueConstraint(fields=list(CallRollup.DIMENSIONS), name="call_hour_key"),
        ]


class LatencyMinute(models.Model):
    """Latency histograms of an organisation's tool calls per minute, total and upstream
    (bucket bounds in compliance/observe/histogram.py): p50/p95/p99 over any window are read
    from one row per minute, not from every call."""

    org_id = models.UUIDField()
    bucket = models.DateTimeField()

    class Meta:
        ordering = ["org_id", "bucket"]
        constraints = [
            models.UniqueConstraint(fields=["org_id", "bucket"], name="latency_minute_key"),
        ]

    def __str__(self) -> str:
        return f"{self.org_id} {self.bucket:%Y-%m-%d %H:%M} latency"


def _histogram_columns() -> tuple[tuple[str, ...], tuple[str, ...]]:
    total = tuple(f"total_{i}" for i in range(BUCKETS))
    upstream = tuple(f"upstream_{i}" for i in range(BUCKETS))
    for name in (*total, *upstream):
        LatencyMinute.add_to_class(name, models.IntegerField(default=0))
    return total, upstream


LATENCY_TOTAL_COLUMNS, LATENCY_UPSTREAM_COLUMNS = _histogram_columns()
