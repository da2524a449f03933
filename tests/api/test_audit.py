"""The audit log through the API: filters, cursor pages in seq order, streamed CSV and NDJSON
exports, and chain verification."""

from __future__ import annotations

import base64
import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest

from tests.api.conftest import tool_call

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)


@pytest.fixture
def events(acme, world):
    from compliance.audit.writer import append_events

    key = str(world.key.id)
    append_events(
        [
            tool_call(acme, ts=T0, tool="read_file", key_id=key, session_id="sess-acme-1"),
            tool_call(
                acme,
                ts=T0 + timedelta(minutes=1),
                tool="=cmd|' /C calc'!A0",
                decision="deny",
                arguments={"path": "/etc/passwd"},
            ),
            tool_call(
                acme,
                ts=T0 + timedelta(minutes=2),
                tool="write_file",
                key_id=key,
                server_id=str(world.server.id),
            ),
            tool_call(
                acme,
                ts=T0 + timedelta(minutes=3),
                type="policy.published",
                tool=None,
                method=None,
                decision=None,
            ),
        ]
    )


def test_events_come_in_seq_order_with_an_opaque_seq_cursor(api, events):
    first = api.get("audit-events/", limit=3).json()
    assert [e["seq"] for e in first["results"]] == [1, 2, 3]
    assert json.loads(base64.urlsafe_b64decode(first["next_cursor"] + "==")) == [3]
    rest = api.get("audit-events/", cursor=first["next_cursor"]).json()
    assert [e["seq"] for e in rest["results"]] == [4]
    assert rest["next_cursor"] is None
    event = first["results"][0]
    assert event["type"] == "tool_call"
    assert event["ts"] == "2026-01-05T12:00:00Z"
    assert len(event["hash"]) == 64


@pytest.mark.parametrize(
    ("params", "tools"),
    [
        ({"tool": "read_file"}, ["read_file"]),
        ({"decision": "deny"}, ["=cmd|' /C calc'!A0"]),
        ({"type": "policy.published"}, [None]),
        ({"session": "sess-acme-1"}, ["read_file"]),
        (
            {"since": "2026-01-05T12:01:00Z", "until": "2026-01-05T12:03:00Z"},
            ["=cmd|' /C calc'!A0", "write_file"],
        ),
        ({"key": "{key}"}, ["read_file", "write_file"]),
        ({"server": "{server}"}, ["write_file"]),
    ],
)
def test_events_are_filtered(api, world, events, params, tools):
    params = {k: v.format(key=world.key.id, server=world.server.id) for k, v in params.items()}
    assert [e["tool"] for e in api.get("audit-events/", **params).json()["results"]] == tools


@pytest.mark.parametrize("path", ["audit-events/", "audit-events/export/"])
@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("decision", "maybe"),
        ("decision", "ALLOW"),
        ("type", "../../etc"),
        ("type", "Tool_Call"),
    ],
)
def test_a_filter_value_no_event_can_have_is_refused_naming_it(api, events, path, field, value):
    response = api.get(path, **{field: value})
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    [error] = response.json()["errors"]
    assert error["field"] == field
    assert f'"{value}"' in error["message"]


def test_every_decision_igris_records_and_any_event_type_can_be_filtered_on(api, acme, events):
    from compliance.audit.writer import append_events
    from governance.events import DECISIONS

    append_events([tool_call(acme, decision="rate_limited", type="vendor:gateway.call-1")])
    for decision in DECISIONS:
        assert api.get("audit-events/", decision=decision).status_code == 200
    [event] = api.get("audit-events/", type="vendor:gateway.call-1").json()["results"]
    assert event["decision"] == "rate_limited"
    assert api.get("audit-events/", type="session.killed_for_key").json()["results"] == []


def test_the_ndjson_export_streams_one_event_per_line(api, events):
    response = api.get("audit-events/export/", format="ndjson", decision="allow")
    assert response.streaming
    assert response["Content-Type"] == "application/x-ndjson"
    assert response["Content-Disposition"].startswith('attachment; filename="audit-acme-')
    lines = b"".join(response.streaming_content).decode().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [(r["seq"], r["tool"]) for r in rows] == [(1, "read_file"), (3, "write_file")]
    assert rows == api.get("audit-events/", decision="allow").json()["results"]


def test_the_csv_export_has_a_header_and_neutralises_formulas(api, events):
    response = api.get("audit-events/export/", format="csv")
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert [r["seq"] for r in rows] == ["1", "2", "3", "4"]
    assert rows[1]["tool"] == "'=cmd|' /C calc'!A0"
    assert json.loads(rows[1]["arguments"]) == {"path": "/etc/passwd"}
    assert rows[3]["tool"] == ""
    assert rows[0]["ts"] == "2026-01-05T12:00:00Z"


def test_the_export_reads_rows_in_chunks(api, acme, world, monkeypatch):
    from compliance.api import events as compliance_api
    from compliance.audit.writer import append_events

    append_events([tool_call(acme, tool=f"t{i}") for i in range(7)])
    monkeypatch.setattr(compliance_api, "EXPORT_CHUNK", 3)
    chunks = list(api.get("audit-events/export/", format="ndjson").streaming_content)
    assert [chunk.count(b"\n") for chunk in chunks] == [3, 3, 1]


def test_the_chain_verifies(api, events):
    body = api.get("audit/verify/").json()
    assert body == {
        "ok": True,
        "checked": 4,
        "head_seq": 4,
        "checkpoint_seq": None,
        "first_break": None,
    }


def test_under_asgi_the_export_is_streamed_chunk_by_chunk(acme, admin_key, monkeypatch):
    # Django reads a synchronous iterator to the end before sending it under ASGI; the export
    # hands ASGI an asynchronous one that fetches each chunk in the request's database thread.
    # (Driven through async_to_sync from this thread, so that thread is this test's.)
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    from compliance.api import events as compliance_api
    from compliance.audit.writer import append_events

    append_events([tool_call(acme, tool=f"t{i}") for i in range(5)])
    monkeypatch.setattr(compliance_api, "EXPORT_CHUNK", 2)

    async def export():
        response = await AsyncClient().get(
            "/api/v1/audit-events/export/",
            {"format": "ndjson"},
            headers={"Authorization": f"Bearer {admin_key[1]}"},
        )
        return response, [chunk async for chunk in response.streaming_content]

    response, chunks = async_to_sync(export)()
    assert response.status_code == 200
    assert response.is_async
    assert [chunk.count(b"\n") for chunk in chunks] == [2, 2, 1]
    tools = [json.loads(line)["tool"] for chunk in chunks for line in chunk.splitlines()]
    assert tools == [f"t{i}" for i in range(5)]
