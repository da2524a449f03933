"""The console's audit log: filters (the API's validation, form errors instead of 400s), the
bounded free-text search, seq cursor pages, a record with its chain status, the streamed export,
and globex never seeing acme's records."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta

import pytest
from django.db import connection
from django.urls import reverse

from tests.api.conftest import tool_call
from tests.api.conftest import world as world  # acme with one of everything (a fixture)
from tests.conftest import login

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
LAYOUT_QUERIES = 4  # session, user, current membership + org, the user's organisations


def _text(response) -> str:
    return response.content.decode()


def _seqs(response) -> list[int]:
    import re

    return [int(s) for s in re.findall(r'<tr data-seq="(\d+)"', _text(response))]


@pytest.fixture
def events(acme, world):
    """Five acme records: seq 1 read_file (key, session), 2 a denied call with arguments,
    3 write_file on the server, 4 a console change, 5 an ingested call."""
    from compliance.audit.writer import append_events

    key = str(world.key.id)
    ingested = tool_call(acme, ts=T0 + timedelta(minutes=4), tool="search_docs")
    ingested["source"] = "ingest:portkey"
    append_events(
        [
            tool_call(acme, ts=T0, tool="read_file", key_id=key, session_id="sess-acme-1"),
            tool_call(
                acme,
                ts=T0 + timedelta(minutes=1),
                tool="delete_records",
                decision="deny",
                arguments={"table": "customers", "path": "/etc/passwd"},
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
            ingested,
        ]
    )


@pytest.fixture
def globex_event(globex):
    from compliance.audit.writer import append_events

    append_events([tool_call(globex, ts=T0, tool="globex_only_tool")])


def test_the_audit_log_lists_the_org_records_newest_first(client, alice, events):
    login(client, alice)
    response = client.get(reverse("console:audit"))
    assert response.status_code == 200
    assert _seqs(response) == [5, 4, 3, 2, 1]
    body = _text(response)
    assert "delete_records" in body and "agents" in body  # the tool, the key's name
    assert response["Cache-Control"].startswith("max-age=0")


def test_the_console_navigation_links_the_audit_log(client, alice, acme):
    login(client, alice)
    assert f'href="{reverse("console:audit")}"' in _text(client.get(reverse("console:home")))


@pytest.mark.parametrize(
    ("params", "seqs"),
    [
        ({"tool": "read_file"}, [1]),
        ({"decision": "deny"}, [2]),
        ({"type": "policy.published"}, [4]),
        ({"session": "sess-acme-1"}, [1]),
        ({"key": "{key}"}, [3, 1]),
        ({"server": "{server}"}, [3]),
        ({"since": "2026-01-05T12:01", "until": "2026-01-05T12:03"}, [3, 2]),
        ({"since": "2026-01-05T12:01:00Z"}, [5, 4, 3, 2]),
        ({"source": "ingest"}, [5]),
        ({"source": "ingest:portkey"}, [5]),
        ({"source": "proxy"}, [4, 3, 2, 1]),
        ({"decision": "", "tool": "  "}, [5, 4, 3, 2, 1]),  # empty boxes mean "any"
    ],
)
def test_each_filter_narrows_the_list(client, alice, world, events, params, seqs):
    login(client, alice)
    params = {k: v.format(key=world.key.id, server=world.server.id) for k, v in params.items()}
    response = client.get(reverse("console:audit"), params)
    assert response.status_code == 200
    assert _seqs(response) == seqs


@pytest.mark.parametrize(
    ("q", "seqs"), [("delete", [2]), ("/ETC/passwd", [2]), ("_file", [3, 1]), ("nothing", [])]
)
def test_the_search_matches_the_tool_and_the_recorded_arguments(client, alice, events, q, seqs):
    login(client, alice)
    response = client.get(reverse("console:audit"), {"q": q})
    assert response.status_code == 200
    assert _seqs(response) == seqs
    assert 'data-testid="audit-searched"' in _text(response)


def test_the_search_reads_a_bounded_window_and_offers_the_older_one(
    client, alice, events, monkeypatch
):
    from compliance.views import audit

    monkeypatch.setattr(audit, "SEARCH_WINDOW", 2)
    login(client, alice)
    first = client.get(reverse("console:audit"), {"q": "read_file"})
    assert _seqs(first) == []  # records 4 and 5 searched, nothing there
    assert "Searched records #4 to #5" in _text(first)
    assert "before=4" in _text(first) and "Search older records" in _text(first)
    second = client.get(reverse("console:audit"), {"q": "read_file", "before": 4})
    assert _seqs(second) == []  # 2 and 3
    third = client.get(reverse("console:audit"), {"q": "read_file", "before": 2})
    assert _seqs(third) == [1]
    assert "Search older records" not in _text(third)


def test_the_search_starts_at_the_newest_record_the_other_filters_allow(
    client, alice, events, monkeypatch
):
    from compliance.views import audit

    monkeypatch.setattr(audit, "SEARCH_WINDOW", 1)
    login(client, alice)
    response = client.get(reverse("console:audit"), {"q": "customers", "decision": "deny"})
    assert _seqs(response) == [2]


def test_pages_follow_a_seq_cursor(client, alice, acme):
    from compliance.audit.writer import append_events

    append_events([tool_call(acme, tool=f"tool_{n}") for n in range(55)])
    login(client, alice)
    first = client.get(reverse("console:audit"))
    assert _seqs(first) == list(range(55, 5, -1))
    assert "before=6" in _text(first)
    second = client.get(reverse("console:audit"), {"before": 6})
    assert _seqs(second) == [5, 4, 3, 2, 1]
    assert 'rel="next"' not in _text(second)


@pytest.mark.parametrize(
    ("params", "field", "shown"),
    [
        ({"decision": "maybe"}, "decision", '"maybe"'),
        ({"type": "Tool_Call"}, "type", '"Tool_Call"'),
        ({"source": "ftp"}, "source", '"ftp"'),
        ({"since": "yesterday"}, "since", "Datetime has wrong format"),
        ({"since": "2026-01-05T12:00", "until": "2026-01-05T11:00"}, "until", "after the start"),
        ({"server": "not-a-uuid"}, "server", "valid UUID"),
        ({"before": "-3"}, "before", "greater than or equal to 1"),
        ({"before": str(2**64)}, "before", "less than or equal to"),
        ({"q": "x" * 201}, "q", "no more than 200"),
    ],
)
def test_a_bad_filter_is_a_form_error_naming_it(client, alice, events, params, field, shown):
    login(client, alice)
    response = client.get(reverse("console:audit"), params)
    assert response.status_code == 400
    body = _text(response)
    assert 'data-testid="audit-errors"' in body
    assert f'href="#f-{field}"' in body
    assert shown.replace('"', "&quot;") in body or shown in body
    assert _seqs(response) == []


def test_the_export_refuses_a_bad_format_on_the_page(client, alice, events):
    login(client, alice)
    response = client.get(reverse("console:audit_export"), {"format": "xlsx"})
    assert response.status_code == 400
    assert "&quot;xlsx&quot; is not a valid choice" in _text(response)


def test_the_detail_shows_the_record_its_hashes_and_a_verified_chain(client, alice, events):
    from compliance.models import AuditEvent

    login(client, alice)
    response = client.get(reverse("console:audit_detail", args=[2]))
    assert response.status_code == 200
    body = _text(response)
    event = AuditEvent.objects.get(org_id=events_org(alice), seq=2)
    assert event.hash in body and event.prev_hash in body
    assert "&quot;/etc/passwd&quot;" in body  # the arguments, as recorded
    assert 'data-status="verified"' in body
    assert "Records #1 to #5" in body
    assert "the current chain head (#5)" in body


def events_org(user):
    from governance.models import Membership

    return Membership.objects.get(user=user).org_id


def test_a_checkpoint_anchors_the_range_of_the_records_before_it(alice, acme, events):
    from compliance.audit.range import verify_range
    from compliance.audit.writer import drain_outbox
    from compliance.services import checkpoint_create

    checkpoint = checkpoint_create(org_id=acme.id)  # at 5
    drain_outbox()  # its own event, and the world's, from 6 on
    before = verify_range(acme.id, 3)
    assert (before.status, before.first_seq, before.last_seq) == ("verified", 1, 5)
    assert (before.start.kind, before.end.kind, before.end.checkpoint_id) == (
        "genesis",
        "checkpoint",
        checkpoint.id,
    )
    after = verify_range(acme.id, 6)
    assert (after.status, after.first_seq) == ("verified", 6)
    assert after.last_seq > 6
    assert (after.start.kind, after.start.seq, after.end.kind) == ("checkpoint", 5, "head")


def _tamper(sql: str, params) -> None:
    # Lift the append-only triggers as an attacker with the owner's rights would; the DDL rolls
    # back with the test's transaction.
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE compliance_auditevent DISABLE TRIGGER USER")
        cursor.execute(sql, params)
        cursor.execute("ALTER TABLE compliance_auditevent ENABLE TRIGGER USER")


def test_the_detail_names_where_an_edited_range_breaks(client, alice, acme, events):
    _tamper(
        "UPDATE compliance_auditevent SET tool = 'harmless' WHERE org_id = %s AND seq = 2",
        [acme.id],
    )
    login(client, alice)
    body = _text(client.get(reverse("console:audit_detail", args=[4])))
    assert 'data-status="broken"' in body
    assert "Broken at #2: hash mismatch." in body


def test_a_long_range_is_checked_around_the_record_only(alice, acme, events):
    from compliance.audit.range import verify_range

    status = verify_range(acme.id, 3, max_rows=3)
    assert (status.status, status.first_seq, status.last_seq, status.checked) == (
        "partial",
        2,
        4,
        3,
    )
    assert (status.start.kind, status.end.kind) == ("none", "none")
    edge = verify_range(acme.id, 1, max_rows=2)
    assert (edge.first_seq, edge.last_seq, edge.start.kind, edge.end.kind) == (
        1,
        2,
        "genesis",
        "none",
    )


@pytest.mark.parametrize("seq", [0, 99, 2**63, 10**30])
def test_a_record_that_is_not_there_is_a_404(client, alice, events, seq):
    login(client, alice)
    assert client.get(f"/audit/{seq}/").status_code == 404


def test_an_event_id_leads_to_its_record(client, alice, acme, events):
    from compliance.models import AuditEvent

    event = AuditEvent.objects.get(org_id=acme.id, seq=3)
    login(client, alice)
    response = client.get(reverse("console:audit_event", args=[event.id]))
    assert response.status_code == 302
    assert response["Location"] == reverse("console:audit_detail", args=[3])


def _export(client, **params) -> bytes:
    response = client.get(reverse("console:audit_export"), params)
    assert response.status_code == 200
    assert response.streaming
    assert response["Cache-Control"] == "no-store"
    return b"".join(response.streaming_content)


def test_the_export_streams_the_whole_filtered_set_as_csv_or_ndjson(client, alice, events):
    login(client, alice)
    rows = [json.loads(line) for line in _export(client, format="ndjson").splitlines()]
    assert [row["seq"] for row in rows] == [1, 2, 3, 4, 5]  # oldest first, as the API's
    filtered = _export(client, format="ndjson", q="file", source="proxy")
    assert [json.loads(line)["tool"] for line in filtered.splitlines()] == [
        "read_file",
        "write_file",
    ]
    table = list(
        csv.DictReader(io.StringIO(_export(client, format="csv", decision="deny").decode()))
    )
    assert [(r["seq"], r["tool"]) for r in table] == [("2", "delete_records")]
    assert json.loads(table[0]["arguments"])["path"] == "/etc/passwd"


def test_the_export_takes_every_page_not_only_the_shown_one(client, alice, acme):
    from compliance.audit.writer import append_events

    append_events([tool_call(acme, tool=f"tool_{n}") for n in range(60)])
    login(client, alice)
    assert len(_export(client, format="ndjson", before="10").splitlines()) == 60


# --- tenancy -----------------------------------------------------------------------------------


def test_charlie_sees_none_of_acme_s_records_in_the_list(client, charlie, events, globex_event):
    login(client, charlie)
    for params in ({}, {"q": "delete"}, {"session": "sess-acme-1"}, {"source": "ingest"}):
        response = client.get(reverse("console:audit"), params)
        body = _text(response)
        assert "delete_records" not in body and "read_file" not in body, params
    assert _seqs(client.get(reverse("console:audit"))) == [1]


def test_charlie_gets_a_404_for_acme_s_records(client, charlie, acme, events, globex_event):
    from compliance.models import AuditEvent

    login(client, charlie)
    assert client.get(reverse("console:audit_detail", args=[3])).status_code == 404
    own = client.get(reverse("console:audit_detail", args=[1]))  # globex's own seq 1
    assert "globex_only_tool" in _text(own) and "read_file" not in _text(own)
    acme_event = AuditEvent.objects.get(org_id=acme.id, seq=2)
    assert client.get(reverse("console:audit_event", args=[acme_event.id])).status_code == 404


def test_charlie_s_export_holds_only_globex_s_records(client, charlie, events, globex_event):
    login(client, charlie)
    rows = [json.loads(line) for line in _export(client, format="ndjson").splitlines()]
    assert [row["tool"] for row in rows] == ["globex_only_tool"]
    assert b"read_file" not in _export(client, format="csv")


def test_a_signed_out_visitor_is_sent_to_sign_in(client, events):
    for url in (reverse("console:audit"), reverse("console:audit_detail", args=[1])):
        response = client.get(url)
        assert response.status_code == 302 and "/accounts/login/" in response["Location"]


# --- query counts ------------------------------------------------------------------------------


def test_the_list_query_count_does_not_grow_with_records(
    client, alice, acme, world, django_assert_num_queries
):
    from compliance.audit.writer import append_events

    key = str(world.key.id)
    append_events([tool_call(acme, tool=f"t{n}", key_id=key) for n in range(30)])
    login(client, alice)
    client.get(reverse("console:audit"))
    # layout + servers + keys + the page
    with django_assert_num_queries(LAYOUT_QUERIES + 3):
        response = client.get(reverse("console:audit"))
    assert len(_seqs(response)) == 30
    # the text search adds the newest record the other filters allow
    with django_assert_num_queries(LAYOUT_QUERIES + 4):
        response = client.get(reverse("console:audit"), {"q": "t1", "key": key})
    assert len(_seqs(response)) == 11


def test_the_detail_query_count_is_pinned(client, alice, acme, events, django_assert_num_queries):
    from compliance.services import checkpoint_create

    login(client, alice)
    client.get(reverse("console:audit_detail", args=[1]))
    # layout + the record + its key + checkpoints below and above + chain head + the range
    with django_assert_num_queries(LAYOUT_QUERIES + 6):
        client.get(reverse("console:audit_detail", args=[1]))
    checkpoint_create(org_id=acme.id)
    # a checkpoint above: no chain head needed
    with django_assert_num_queries(LAYOUT_QUERIES + 5):
        response = client.get(reverse("console:audit_detail", args=[1]))
    assert 'data-status="verified"' in _text(response)


# --- links from the session and anomaly pages ---------------------------------------------------


def test_the_session_pages_link_to_the_session_s_audit_records(client, alice, world, events):
    login(client, alice)
    link = f'href="{reverse("console:audit")}?session=sess-acme-1"'
    assert link in _text(client.get(reverse("console:session_detail", args=["sess-acme-1"])))
    assert link in _text(client.get(reverse("console:sessions")))
    assert _seqs(client.get(f"{reverse('console:audit')}?session=sess-acme-1")) == [1]


def test_an_anomaly_links_to_its_session_s_records_and_its_own_record(
    client, alice, acme, world, events
):
    from compliance.models import AuditEvent
    from governance.models import Anomaly

    event = AuditEvent.objects.get(org_id=acme.id, seq=2)
    Anomaly.objects.filter(pk=world.anomaly.pk).update(event_id=event.id)
    login(client, alice)
    body = _text(client.get(reverse("console:anomalies")))
    assert f'href="{reverse("console:audit")}?session=sess-acme-1"' in body
    target = reverse("console:audit_event", args=[event.id])
    assert f'href="{target}"' in body
    assert client.get(target, follow=True).redirect_chain[-1][0] == "/audit/2/"


def test_a_record_of_another_gateway_s_session_id_with_a_slash_still_opens(client, alice, acme):
    from compliance.audit.writer import append_events

    ingested = tool_call(acme, session_id="gw/run/42", tool="search_docs")
    ingested["source"] = "ingest:generic"
    append_events([ingested])
    login(client, alice)
    response = client.get(reverse("console:audit_detail", args=[1]))
    assert response.status_code == 200
    assert "gw/run/42" in _text(response)
    assert _seqs(client.get(reverse("console:audit"), {"session": "gw/run/42"})) == [1]


def test_under_asgi_the_console_export_is_streamed_chunk_by_chunk(alice, acme, monkeypatch):
    # The page hands ASGI the API exporter's asynchronous iterator, which fetches each chunk in
    # the request's database thread, so memory stays at one chunk (see compliance/api.py).
    from asgiref.sync import async_to_sync
    from django.test import AsyncClient

    from compliance.api import events as compliance_api
    from compliance.audit.writer import append_events

    append_events([tool_call(acme, tool=f"t{i}") for i in range(5)])
    monkeypatch.setattr(compliance_api, "EXPORT_CHUNK", 2)
    client = AsyncClient()
    client.force_login(alice, backend="django.contrib.auth.backends.ModelBackend")

    async def export():
        response = await client.get(reverse("console:audit_export"), {"format": "ndjson"})
        return response, [chunk async for chunk in response.streaming_content]

    response, chunks = async_to_sync(export)()
    assert response.status_code == 200
    assert response.is_async
    assert [chunk.count(b"\n") for chunk in chunks] == [2, 2, 1]
