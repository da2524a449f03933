"""Ingestion: POST /api/v1/ingest/<provider> into the hash-chained audit log."""

from __future__ import annotations

import base64
import gzip
import json
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from django.core.cache import cache

from compliance.audit.writer import drain_outbox
from compliance.ingest import MAX_BODY_BYTES, MAX_ITEMS, PROVIDERS
from compliance.ingest.items import IngestItem
from compliance.ingest.services import ingest_batch
from compliance.models import AuditEvent
from governance import ingest_signing as signing
from governance.destructive import is_destructive_name
from governance.models import Anomaly, IngestProvider, IngestSource, PendingEvent
from governance.permissions import PermissionDenied
from governance.services.api_keys import api_key_create, api_key_revoke
from governance.services.ingest_sources import (
    ingest_source_create,
    ingest_source_rotate,
    ingest_source_secret,
)

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ingest"


def fixture(provider: str) -> bytes:
    return (FIXTURES / f"{provider}.json").read_bytes()


def post(client, provider, body: bytes, *, source=None, secret=None, key=None, ts=None, **headers):
    if source is not None:
        headers["X-Igris-Source"] = str(source.id)
    if secret is not None:
        headers["X-Igris-Signature"] = signing.sign(secret, body, int(ts or time.time()))
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    content_type = headers.pop("content_type", "application/json")
    return client.post(
        f"/api/v1/ingest/{provider}", data=body, content_type=content_type, headers=headers
    )


def ingested(org=None) -> int:
    """Envelopes waiting in the outbox that came from ingestion."""
    pending = PendingEvent.objects.filter(payload__source__startswith="ingest:")
    return (pending.filter(org_id=org.id) if org else pending).count()


def stored(org, provider=None) -> list[AuditEvent]:
    events = AuditEvent.objects.filter(org_id=org.id, source__startswith="ingest:")
    if provider:
        events = events.filter(source=f"ingest:{provider}")
    return list(events.order_by("seq"))


def problem(answer) -> dict:
    assert answer["Content-Type"] == "application/problem+json"
    return answer.json()


@pytest.fixture
def source_for(acme, alice):
    """An acme source per provider: (IngestSource, secret)."""
    made = {}

    def make(provider, org=None, actor=None):
        key = (provider, org)
        if key not in made:
            made[key] = ingest_source_create(
                org=org or acme, actor=actor or alice, name=f"{provider} feed", provider=provider
            )
        return made[key]

    return make


def gzipped_ndjson(records: list) -> bytes:
    return gzip.compress(b"\n".join(json.dumps(r).encode() for r in records) + b"\n")


# --- every provider's documented payload ---------------------------------------------------------

# provider -> (accepted indexes, rejected indexes, [(type, {column or data key: value})])
EXPECTED = {
    "generic": (
        [0, 1, 2],
        [],
        [
            (
                "tool_call",
                {
                    "tool": "create_issue",
                    "server_slug": "github",
                    "session_id": "sess-42",
                    "decision": "allow",
                    "latency_ms": 182.5,
                    "method": "tools/call",
                    "data.attributes": {"repo": "acme/web", "gateway": "in-house"},
                },
            ),
            ("tool_call", {"tool": "delete_branch", "result": "ok"}),
            (
                "deploy.approved",
                {"data.attributes": {"environment": "production", "ticket": "OPS-311"}},
            ),
        ],
    ),
    "otlp": (
        [0, 1, 2, 3, 5],
        [4, 6],
        [
            ("agent_run", {"session_id": "conv_5j66UpCpwteGg4YSxUnt7lPY", "latency_ms": 2400.0}),
            (
                "llm_call",
                {
                    "data.model": "gpt-4o-2024-08-06",
                    "data.usage": {"input_tokens": 812, "output_tokens": 96},
                    "server_slug": None,
                },
            ),
            ("tool_call", {"tool": "get_order_status", "latency_ms": 84.5, "result": "ok"}),
            (
                "tool_call",
                {"tool": "drop_table", "server_slug": "db-mcp.internal", "result": "error"},
            ),
            ("gen_ai.event", {"data.tool_calls": ["get_order_status"]}),
        ],
    ),
    "portkey": (
        [0, 1],
        [],
        [
            (
                "llm_call",
                {
                    "upstream_status": 200,
                    "latency_ms": 1382.0,
                    "data.model": "gpt-4o-mini",
                    "data.tool_calls": ["purge_ticket"],
                    "session_id": "support-run-8841",
                },
            ),
            ("llm_call", {"upstream_status": 529, "result": "error"}),
        ],
    ),
    "helicone": (
        [0],
        [],
        [
            (
                "llm_call",
                {
                    "session_id": "incident-2025-06-01",
                    "latency_ms": 2874.0,
                    "data.usage": {
                        "input_tokens": 1534,
                        "output_tokens": 211,
                        "total_tokens": 1745,
                    },
                },
            )
        ],
    ),
    "datadog": (
        [0, 1, 2],
        [],
        [
            ("agent_step", {"data.span_kind": "workflow", "session_id": "ticket-5521"}),
            ("llm_call", {"data.model": "gpt-4o", "latency_ms": 1250.0}),
            ("tool_call", {"tool": "lookup_customer", "result": "error"}),
        ],
    ),
    "cloudflare": (
        [0, 1, 2],
        [],
        [
            ("llm_call", {"upstream_status": 200, "data.gateway": "prod-gateway"}),
            ("llm_call", {"upstream_status": 424, "decision": "deny"}),
            ("llm_call", {"upstream_status": 429, "decision": "rate_limited"}),
        ],
    ),
    "cloudwatch": (
        [0, 1],
        [2],
        [
            (
                "llm_call",
                {
                    "data.model": "anthropic.claude-3-5-sonnet-20240620-v1:0",
                    "data.tool_calls": ["destroy_instance"],
                },
            ),
            (
                "tool_call",
                {"tool": "create_ticket", "server_slug": "jira", "session_id": "agentcore-7"},
            ),
        ],
    ),
}


def _value(event: AuditEvent, name: str):
    if name.startswith("data."):
        return event.data.get(name[len("data.") :])
    return getattr(event, name)


def _send(client, provider, source, secret):
    body = fixture(provider)
    if provider == "cloudflare":  # Logpush's wire format: gzip-compressed NDJSON
        return post(
            client,
            provider,
            gzipped_ndjson(json.loads(body)),
            source=source,
            secret=secret,
            content_type="application/x-ndjson",
            **{"Content-Encoding": "gzip"},
        )
    return post(client, provider, body, source=source, secret=secret)


@pytest.mark.parametrize("provider", PROVIDERS)
def test_each_providers_payload_is_accepted_and_stored_in_the_chain(
    client, acme, source_for, provider
):
    source, secret = source_for(provider)
    accepted, rejected, rows = EXPECTED[provider]

    answer = _send(client, provider, source, secret)

    assert answer.status_code == 200, answer.content
    body = answer.json()
    assert body["accepted"] == accepted
    assert [r["index"] for r in body["rejected"]] == rejected
    drain_outbox()
    events = [e for e in stored(acme, provider) if e.type != "anomaly"]
    assert [e.type for e in events] == [t for t, _ in rows]
    for event, (_, fields) in zip(events, rows, strict=True):
        for name, value in fields.items():
            assert _value(event, name) == value, (provider, name)
        assert event.data["ingest"]["provider"] == provider
        assert event.data["ingest"]["source_id"] == str(source.id)
    seqs = [e.seq for e in AuditEvent.objects.filter(org_id=acme.id).order_by("seq")]
    assert seqs == list(range(1, len(seqs) + 1))


def test_stored_events_keep_the_providers_time_and_actor(client, acme, source_for):
    source, secret = source_for("generic")
    post(client, "generic", fixture("generic"), source=source, secret=secret)
    drain_outbox()
    first = stored(acme, "generic")[0]
    assert first.ts == datetime(2025, 6, 1, 10, 0, 0, 123456, tzinfo=UTC)
    assert first.actor == {"kind": "agent", "id": "agent-7", "label": "release bot"}
    assert first.recorded_at > first.ts


def test_the_decoded_cloudwatch_payload_and_a_control_message_are_read(client, acme, source_for):
    source, secret = source_for("cloudwatch")
    encoded = json.loads(fixture("cloudwatch"))["awslogs"]["data"]
    decoded = gzip.decompress(base64.b64decode(encoded))

    answer = post(client, "cloudwatch", decoded, source=source, secret=secret)
    assert answer.status_code == 200
    assert answer.json()["accepted"] == [0, 1]

    control = json.dumps({"messageType": "CONTROL_MESSAGE", "logEvents": []}).encode()
    answer = post(client, "cloudwatch", control, source=source, secret=secret)
    assert (answer.status_code, answer.json()) == (200, {"accepted": [], "rejected": []})
    assert ingested(acme) == 2 + 1  # and the anomaly: the model asked for destroy_instance


def test_a_helicone_custom_tool_log_is_a_tool_call(client, acme, source_for):
    source, secret = source_for("helicone")
    body = json.dumps(
        {
            "request_id": "b2a1",
            "created_at": "2025-06-01T10:00:00Z",
            "request_body": {"_type": "tool", "toolName": "weather_api", "input": {"city": "Oslo"}},
            "response_body": {"_type": "tool", "toolName": "weather_api", "temperature": 4},
            "metadata": {"latencyMs": 120},
        }
    ).encode()
    assert post(client, "helicone", body, source=source, secret=secret).status_code == 200
    drain_outbox()
    [event] = stored(acme, "helicone")
    assert (event.type, event.tool, event.method, event.latency_ms) == (
        "tool_call",
        "weather_api",
        "tools/call",
        120.0,
    )
    assert "input" not in json.dumps(event.data)  # arguments are not kept


def test_otlp_answers_with_its_partial_success(client, source_for):
    source, secret = source_for("otlp")
    answer = post(client, "otlp", fixture("otlp"), source=source, secret=secret)
    partial = answer.json()["partialSuccess"]
    assert (partial["rejectedSpans"], partial["rejectedLogRecords"]) == (1, 1)
    protobuf = post(
        client,
        "otlp",
        b"\x0a\x00",
        source=source,
        secret=secret,
        content_type="application/x-protobuf",
    )
    assert (protobuf.status_code, problem(protobuf)["code"]) == (415, "unsupported_media_type")


# --- anomalies ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "destructive"),
    [
        ("delete_branch", True),
        ("drop-table", True),
        ("truncate.logs", True),
        ("destroy", True),
        ("PURGE_cache", True),
        ("deleted_items", False),
        ("list_deletes", False),
        ("dropbox_upload", False),
        ("", False),
        (None, False),
    ],
)
def test_the_destructive_name_pattern(name, destructive):
    assert is_destructive_name(name) is destructive


def test_a_destructive_tool_name_records_an_anomaly_in_its_organisation(
    client, acme, globex, source_for
):
    source, secret = source_for("generic")
    post(client, "generic", fixture("generic"), source=source, secret=secret)

    [anomaly] = Anomaly.objects.filter(org=acme)
    assert (anomaly.kind, anomaly.severity, anomaly.tool) == (
        "destructive_pattern",
        "high",
        "delete_branch",
    )
    assert not Anomaly.objects.filter(org=globex).exists()
    drain_outbox()
    [event] = [e for e in stored(acme) if e.type == "anomaly"]
    assert event.id == anomaly.event_id
    assert (event.tool, event.session_id, event.decision) == (
        "delete_branch",
        "sess-42",
        "observed",
    )


def test_a_tool_a_model_asked_for_counts_as_anomaly_input(client, acme, source_for):
    source, secret = source_for("portkey")
    post(client, "portkey", fixture("portkey"), source=source, secret=secret)
    [anomaly] = Anomaly.objects.filter(org=acme)
    assert anomaly.tool == "purge_ticket"
    assert "asked for" in anomaly.detail["message"]


def test_a_session_gets_one_destructive_anomaly_per_cooldown(client, acme, source_for):
    source, secret = source_for("generic")

    def event(n: int) -> bytes:
        item = {"type": "tool_call", "ts": "2025-06-01T10:00:00Z", "tool": "delete_repo"}
        return json.dumps({"events": [{**item, "session_id": "s1", "id": f"e{n}"}]}).encode()

    post(client, "generic", event(1), source=source, secret=secret)
    post(client, "generic", event(2), source=source, secret=secret)
    assert Anomaly.objects.filter(org=acme).count() == 1


# --- authentication -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ("wrong_secret", "signature_invalid"),
        ("other_body", "signature_invalid"),
        ("expired", "signature_expired"),
        ("future", "signature_expired"),
        ("missing", "signature_missing"),
        ("malformed", "signature_malformed"),
        ("unknown_source", "source_unknown"),
        ("no_source", "source_missing"),
    ],
)
def test_a_bad_signature_is_refused_and_stores_nothing(client, acme, source_for, tamper, reason):
    source, secret = source_for("generic")
    body = fixture("generic")
    now = int(time.time())
    headers = {
        "X-Igris-Source": str(source.id),
        "X-Igris-Signature": signing.sign(secret, body, now),
    }
    if tamper == "wrong_secret":
        headers["X-Igris-Signature"] = signing.sign("igs_not-the-secret", body, now)
    elif tamper == "other_body":
        headers["X-Igris-Signature"] = signing.sign(secret, body + b" ", now)
    elif tamper == "expired":
        headers["X-Igris-Signature"] = signing.sign(secret, body, now - 301)
    elif tamper == "future":
        headers["X-Igris-Signature"] = signing.sign(secret, body, now + 301)
    elif tamper == "missing":
        del headers["X-Igris-Signature"]
    elif tamper == "malformed":
        headers["X-Igris-Signature"] = f"v1={'0' * 64}"
    elif tamper == "unknown_source":
        headers["X-Igris-Source"] = "0b7d5c1e-0000-4000-8000-000000000000"
    elif tamper == "no_source":
        del headers["X-Igris-Source"]

    answer = post(client, "generic", body, **headers)

    assert answer.status_code == 401
    assert (problem(answer)["code"], problem(answer)["reason"]) == ("unauthenticated", reason)
    assert ingested() == 0


def test_an_unknown_source_is_named_as_unknown(client, acme, source_for):
    source, secret = source_for("generic")
    body = fixture("generic")
    headers = {"X-Igris-Signature": signing.sign(secret, body, int(time.time()))}
    for named in ("0b7d5c1e-0000-4000-8000-000000000000", "generic feed"):
        answer = post(client, "generic", body, **headers, **{"X-Igris-Source": named})
        assert answer.status_code == 401
        assert problem(answer)["reason"] == "source_unknown"
        assert "takes the source's id" in problem(answer)["detail"]
    assert ingested() == 0


def test_a_signed_request_delivered_twice_is_stored_once(client, acme, source_for):
    source, secret = source_for("generic")
    body = json.loads(fixture("generic"))
    for item in body["events"]:
        item.pop("id", None)  # items without ids: nothing else would notice the duplicate
    raw = json.dumps(body).encode()
    signed = {
        "X-Igris-Source": str(source.id),
        "X-Igris-Signature": signing.sign(secret, raw, int(time.time())),
    }

    first = post(client, "generic", raw, **signed)
    once = ingested(acme)
    again = post(client, "generic", raw, **signed)
    # Extra or reordered v1 entries do not make the same request look new.
    padded = {**signed, "X-Igris-Signature": signed["X-Igris-Signature"] + f",v1={'0' * 64}"}
    padded_again = post(client, "generic", raw, **padded)

    assert first.status_code == 200 and len(first.json()["accepted"]) == 3 and once >= 3
    for answer in (again, padded_again):
        assert answer.status_code == 409
        assert answer["Content-Type"] == "application/problem+json"
        assert problem(answer)["code"] == "replayed"
    assert ingested(acme) == once
    # Signed anew (another timestamp), the same items are a new delivery.
    later = post(client, "generic", raw, source=source, secret=secret, ts=time.time() + 1)
    assert later.status_code == 200 and ingested(acme) == once + 3


def test_a_signed_request_that_stored_nothing_may_be_sent_again(client, acme, source_for):
    source, secret = source_for("generic")
    raw = b'{"events": [{"type": "tool_call"}]}'  # a tool_call without its tool: rejected
    signed = {
        "X-Igris-Source": str(source.id),
        "X-Igris-Signature": signing.sign(secret, raw, int(time.time())),
    }
    assert post(client, "generic", raw, **signed).status_code == 422
    assert post(client, "generic", raw, **signed).status_code == 422  # not 409
    assert ingested(acme) == 0


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (lambda good, now: good, None),
        (lambda good, now: f"{good},v1={'0' * 64}", None),  # any matching v1 entry will do
        (lambda good, now: f"t={now},v1={'0' * 64},{good.split(',')[1]}", None),
        (lambda good, now: good.upper(), "signature_malformed"),  # T= is not t=
        (lambda good, now: f"t={now}", "signature_malformed"),
        (lambda good, now: f"t=soon,{good.split(',')[1]}", "signature_malformed"),
        (lambda good, now: good + "0", "signature_malformed"),
        (lambda good, now: "", "signature_missing"),
        (lambda good, now: f"t={now - 301},{good.split(',')[1]}", "signature_expired"),
    ],
)
def test_signature_header_rules(header, expected):
    now = 1_750_000_000
    good = signing.sign("igs_secret", b"{}", now)
    assert signing.verify(header(good, now), b"{}", ["igs_secret"], now=now) == expected


def test_a_signature_within_five_minutes_is_accepted(client, source_for):
    source, secret = source_for("generic")
    answer = post(
        client, "generic", fixture("generic"), source=source, secret=secret, ts=time.time() - 290
    )
    assert answer.status_code == 200


def test_a_rotated_secret_replaces_the_old_one_at_once(client, acme, alice, source_for):
    source, old = source_for("generic")
    _, new = ingest_source_rotate(org=acme, actor=alice, source=source)
    assert new != old
    assert post(client, "generic", fixture("generic"), source=source, secret=old).status_code == 401
    assert post(client, "generic", fixture("generic"), source=source, secret=new).status_code == 200


def test_the_secret_is_stored_encrypted_and_shown_once(acme, alice):
    source, secret = ingest_source_create(org=acme, actor=alice, name="edge", provider="otlp")
    stored_bytes = bytes(IngestSource.objects.get(pk=source.pk).secret_encrypted)
    assert secret.startswith("igs_")
    assert secret.encode() not in stored_bytes
    assert ingest_source_secret(source) == secret
    assert IngestProvider.values == list(PROVIDERS)


def test_an_outsider_cannot_create_a_source_in_another_organisation(acme, charlie):
    with pytest.raises(PermissionDenied):
        ingest_source_create(org=acme, actor=charlie, name="sneaky", provider="generic")


def test_an_ingest_scoped_key_may_send_instead_of_a_signature(client, acme, alice):
    _, key = api_key_create(org=acme, actor=alice, name="logpush", scopes=["ingest"])
    answer = post(client, "generic", fixture("generic"), key=key)
    assert answer.status_code == 200
    drain_outbox()
    events = stored(acme, "generic")
    assert events and all(e.data["ingest"]["via"] == "api_key" for e in events)


def test_a_key_without_the_ingest_scope_or_revoked_is_refused(client, acme, alice):
    reader, read_key = api_key_create(org=acme, actor=alice, name="reader", scopes=["read"])
    answer = post(client, "generic", fixture("generic"), key=read_key)
    assert (answer.status_code, problem(answer)["reason"]) == (403, "scope")

    sender, send_key = api_key_create(org=acme, actor=alice, name="sender", scopes=["ingest"])
    api_key_revoke(org=acme, actor=alice, key=sender)
    answer = post(client, "generic", fixture("generic"), key=send_key)
    assert (answer.status_code, problem(answer)["reason"]) == (401, "revoked")

    anonymous = post(client, "generic", fixture("generic"))
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="igris"'
    assert ingested() == 0


def test_a_source_writes_only_for_its_own_provider(client, source_for):
    source, secret = source_for("otlp")
    answer = post(client, "generic", fixture("generic"), source=source, secret=secret)
    assert (answer.status_code, problem(answer)["code"]) == (403, "provider_mismatch")


# --- tenancy --------------------------------------------------------------------------------------


def test_a_globex_source_cannot_write_into_acme(client, acme, globex, charlie, source_for):
    globex_source, globex_secret = source_for("generic", org=globex, actor=charlie)
    acme_source, _ = source_for("generic")
    # The body cannot name an organisation...
    smuggled = json.dumps(
        {"events": [{"type": "note", "ts": "2025-06-01T10:00:00Z", "org_id": str(acme.id)}]}
    ).encode()
    answer = post(client, "generic", smuggled, source=globex_source, secret=globex_secret)
    assert answer.status_code == 422
    assert "org_id" in problem(answer)["rejected"][0]["reason"]
    # ...nor can globex's secret sign for acme's source.
    body = fixture("generic")
    forged = post(client, "generic", body, source=acme_source, secret=globex_secret)
    assert forged.status_code == 401

    assert (
        post(client, "generic", body, source=globex_source, secret=globex_secret).status_code == 200
    )
    drain_outbox()
    assert stored(acme) == []
    assert len([e for e in stored(globex) if e.type != "anomaly"]) == 3
    assert Anomaly.objects.filter(org=globex).count() == 1
    assert not Anomaly.objects.filter(org=acme).exists()


# --- validation and limits ------------------------------------------------------------------------


def test_invalid_items_are_rejected_one_by_one_and_the_valid_ones_stored(client, acme, source_for):
    source, secret = source_for("generic")
    ts = "2025-06-01T10:00:00Z"
    future = (datetime.now(UTC) + timedelta(minutes=10)).isoformat()
    events = [
        {"type": "tool_call", "ts": ts, "tool": "search", "server": "docs"},
        {"type": "tool_call", "tool": "search"},
        {"type": "tool_call", "ts": "2025-06-01T10:00:00", "tool": "search"},
        {"type": "tool_call", "ts": ts, "tool": "search", "colour": "blue"},
        {"type": "policy.published", "ts": ts},
        {"type": "tool_call", "ts": future, "tool": "search"},
        {"type": "note", "ts": ts, "data": {"text": "nul \u0000 here"}},
        {"type": "tool_call", "ts": ts},
        {"type": "tool_call", "ts": ts, "tool": "x" * 300},
        "not an object",
        {"type": "note", "ts": ts, "latency_ms": "fast"},
        {"type": "Note!", "ts": ts},
    ]
    answer = post(
        client, "generic", json.dumps({"events": events}).encode(), source=source, secret=secret
    )

    assert answer.status_code == 200
    body = answer.json()
    assert body["accepted"] == [0]
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert set(reasons) == set(range(1, len(events)))
    assert "ts must be" in reasons[1] and "ts must be" in reasons[2]
    assert "colour" in reasons[3]
    assert "reserves" in reasons[4]
    assert "future" in reasons[5]
    assert "NUL" in reasons[6]
    assert "tool's name" in reasons[7]
    assert "at most 256" in reasons[8]
    drain_outbox()
    [event] = stored(acme, "generic")
    assert (event.tool, event.server_slug) == ("search", "docs")


def test_an_item_s_decision_must_be_one_igris_records_itself(client, acme, source_for):
    # The audit API's decision filter lists every value a stored event can hold.
    source, secret = source_for("generic")
    ts = "2025-06-01T10:00:00Z"
    events = [
        {"type": "tool_call", "ts": ts, "tool": "search", "decision": "deny"},
        {"type": "tool_call", "ts": ts, "tool": "search", "decision": "maybe"},
        {"type": "note\n", "ts": ts},
    ]
    answer = post(
        client, "generic", json.dumps({"events": events}).encode(), source=source, secret=secret
    )
    assert answer.status_code == 200
    body = answer.json()
    assert body["accepted"] == [0]
    reasons = {r["index"]: r["reason"] for r in body["rejected"]}
    assert "'maybe'" in reasons[1] and "rate_limited" in reasons[1]
    assert "type must be" in reasons[2]
    drain_outbox()
    [event] = stored(acme, "generic")
    assert event.decision == "deny"


def test_a_batch_without_a_valid_item_is_422_and_stores_nothing(client, source_for):
    source, secret = source_for("generic")
    body = json.dumps({"events": [{"type": "tool_call"}, {"ts": "nope"}]}).encode()
    answer = post(client, "generic", body, source=source, secret=secret)
    assert answer.status_code == 422
    assert problem(answer)["code"] == "no_valid_items"
    assert [r["index"] for r in problem(answer)["rejected"]] == [0, 1]
    empty = post(client, "generic", b'{"events": []}', source=source, secret=secret)
    assert (empty.status_code, problem(empty)["code"]) == (422, "empty_batch")
    broken = post(client, "generic", b'{"events": [', source=source, secret=secret)
    assert (broken.status_code, problem(broken)["code"]) == (400, "malformed_payload")
    assert ingested() == 0


def test_oversized_requests_are_413_and_store_nothing(client, source_for):
    source, secret = source_for("generic")
    item = {"type": "note", "ts": "2025-06-01T10:00:00Z"}

    too_many = json.dumps({"events": [item] * (MAX_ITEMS + 1)}).encode()
    answer = post(client, "generic", too_many, source=source, secret=secret)
    assert (answer.status_code, problem(answer)["code"]) == (413, "too_many_items")

    too_big = json.dumps({"events": [{**item, "data": {"pad": "x" * MAX_BODY_BYTES}}]}).encode()
    answer = post(client, "generic", too_big, source=source, secret=secret)
    assert (answer.status_code, problem(answer)["code"]) == (413, "body_too_large")

    bomb = gzip.compress(b'{"events": [' + b" " * (MAX_BODY_BYTES + 10) + b"]}")
    answer = post(
        client, "generic", bomb, source=source, secret=secret, **{"Content-Encoding": "gzip"}
    )
    assert (answer.status_code, problem(answer)["code"]) == (413, "body_too_large")

    exactly = json.dumps({"events": [item] * MAX_ITEMS}).encode()
    assert post(client, "generic", exactly, source=source, secret=secret).status_code == 200
    assert ingested() == MAX_ITEMS


# --- idempotency and atomicity --------------------------------------------------------------------


def test_an_idempotency_key_makes_a_retry_safe(client, acme, source_for):
    source, secret = source_for("generic")
    body = json.dumps(
        {"events": [{"type": "note", "ts": "2025-06-01T10:00:00Z"}] * 3}  # no ids of their own
    ).encode()

    first = post(
        client, "generic", body, source=source, secret=secret, **{"Idempotency-Key": "k-1"}
    )
    again = post(
        client, "generic", body, source=source, secret=secret, **{"Idempotency-Key": "k-1"}
    )

    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert again["Idempotent-Replayed"] == "true"
    assert ingested() == 3
    other = post(
        client, "generic", body + b"\n", source=source, secret=secret, **{"Idempotency-Key": "k-1"}
    )
    assert (other.status_code, problem(other)["code"]) == (422, "idempotency_key_reused")

    # Even with the remembered answer lost, the retry's envelopes are the same ones: the audit
    # writer stores them once.
    cache.clear()
    post(client, "generic", body, source=source, secret=secret, **{"Idempotency-Key": "k-1"})
    assert ingested() == 6
    drain_outbox()
    assert len(stored(acme, "generic")) == 3


def test_a_redelivered_provider_record_is_stored_once(client, acme, source_for):
    source, secret = source_for("cloudflare")
    body = gzipped_ndjson(json.loads(fixture("cloudflare")))
    for _ in range(2):  # Logpush retries a batch it got no answer for
        post(
            client, "cloudflare", body, source=source, secret=secret, **{"Content-Encoding": "gzip"}
        )
    drain_outbox()
    assert len(stored(acme, "cloudflare")) == 3


def test_a_batch_is_stored_all_together_or_not_at_all(acme, alice, monkeypatch):
    from compliance.ingest import services as service

    real, calls = service.anomaly_record, []

    def fails_second_time(**kwargs):
        calls.append(kwargs)
        if len(calls) == 2:
            raise RuntimeError("database went away")
        return real(**kwargs)

    monkeypatch.setattr(service, "anomaly_record", fails_second_time)
    source, _ = ingest_source_create(org=acme, actor=alice, name="feed", provider="generic")
    ts = datetime(2025, 6, 1, tzinfo=UTC)
    items = [
        IngestItem(type="tool_call", ts=ts, data={"tool": "search", "session_id": "a"}),
        IngestItem(type="tool_call", ts=ts, data={"tool": "delete_x", "session_id": "a"}),
        IngestItem(type="tool_call", ts=ts, data={"tool": "drop_y", "session_id": "b"}),
    ]
    with pytest.raises(RuntimeError):
        ingest_batch(source_or_key=source, provider="generic", items=items)

    assert ingested() == 0
    assert not Anomaly.objects.exists()
    # The cooldowns taken for the failed batch were given back.
    monkeypatch.setattr(service, "anomaly_record", real)
    ingest_batch(source_or_key=source, provider="generic", items=items)
    assert ingested() == 3 + 2
    assert Anomaly.objects.filter(org=acme).count() == 2


def test_unknown_providers_and_other_methods_are_problems(client, source_for):
    answer = client.post("/api/v1/ingest/splunk", data=b"{}", content_type="application/json")
    assert (answer.status_code, problem(answer)["code"]) == (404, "unknown_provider")
    answer = client.get("/api/v1/ingest/generic")
    assert (answer.status_code, answer["Allow"]) == (405, "POST")
