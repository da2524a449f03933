"""The writer's batch encoding (compliance/audit/rows.py, store.py) against the reference encoder.

`store` encodes each event's members once and chains by filling prev_hash and seq into a
template; these properties hold it to chain.py's reference encoder, byte for byte, for any
envelope the writer accepts. Pure: no database.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from compliance.audit import rows as audit_rows
from compliance.audit import store
from compliance.audit.chain import CHAINED_FIELDS, GENESIS, encode_reference, link
from compliance.audit.rows import Incoming, MalformedEvent
from compliance.models import CALL_FIELDS

ORGS = [str(uuid.uuid4()) for _ in range(3)]
RECORDED_AT = datetime(2026, 11, 26, 1, 2, 3, 456789, tzinfo=UTC)

texts = st.text(alphabet=st.characters(exclude_categories=("Cs",), exclude_characters="\x00"))
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | texts
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(texts, children, max_size=3),
    max_leaves=12,
)
# Values a call field may carry: some fit their column (lifted), some do not (kept in data).
call_values = (
    json_values
    | st.uuids().map(str)
    | st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.sampled_from(["tools/call", "allow", "github", "ok", "2025-06-18"])
)
envelope_data = st.dictionaries(
    st.sampled_from(CALL_FIELDS) | texts, call_values | json_values, max_size=12
)
timestamps = st.datetimes(
    min_value=datetime(2000, 1, 1), timezones=st.sampled_from([UTC, timezone(timedelta(hours=5))])
)


@st.composite
def envelopes(draw) -> dict:
    return {
        "id": str(draw(st.uuids())),
        "org_id": draw(st.sampled_from(ORGS)),
        "ts": draw(timestamps).isoformat(),
        "source": draw(st.sampled_from(["proxy", "console", "ingest"])),
        "type": draw(st.sampled_from(["tool_call", "policy.published"])),
        "actor": draw(st.dictionaries(texts, json_values, max_size=3)),
        "data": draw(envelope_data),
    }


def reference_hashes(rows: list[dict]) -> list[str]:
    """Each stored row's hash recomputed with chain.py's reference encoder, in chain order."""
    hashes = []
    for row in rows:
        members = {name: row[name] for name in CHAINED_FIELDS}
        canonical = encode_reference(members).encode("utf-8")
        hashes.append(link(row["prev_hash"], canonical))
    return hashes


def chained(items: list[Incoming]) -> list[dict]:
    prepared = []
    for item in items:
        try:
            prepared.append(audit_rows.envelope_row(item, RECORDED_AT))
        except MalformedEvent as exc:
            prepared.append(audit_rows.malformed_row(item, str(exc), RECORDED_AT))
    heads: dict[str, tuple[int, str]] = defaultdict(lambda: (0, GENESIS))
    store.chain_entries(prepared, heads)
    return [entry.row for entry in prepared]


@settings(max_examples=60, deadline=None)
@given(st.lists(envelopes(), min_size=1, max_size=6))
def test_stored_hashes_are_the_reference_encoders_for_any_envelope(batch):
    # Through JSON text (the stream's and outbox's path) and as Python values (append_events).
    for items in (
        [Incoming(json.loads(json.dumps(e)), f"stream:{i}") for i, e in enumerate(batch)],
        [Incoming(e, f"direct:{i}", from_json=False) for i, e in enumerate(batch)],
    ):
        rows = chained(items)
        assert [row["hash"] for row in rows] == reference_hashes(rows)
        for org in ORGS:
            chain = [row for row in rows if row["org_id"] == org]
            assert [row["seq"] for row in chain] == list(range(1, len(chain) + 1))
            previous = [GENESIS, *(row["hash"] for row in chain)][: len(chain)]
            assert [row["prev_hash"] for row in chain] == previous


@settings(max_examples=60, deadline=None)
@given(envelopes())
def test_json_columns_go_to_copy_as_text_that_reads_back_to_what_was_hashed(envelope):
    for item in (
        Incoming(json.loads(json.dumps(envelope)), "stream:1"),
        Incoming(envelope, "direct:1", from_json=False),
    ):
        entry = audit_rows.envelope_row(item, RECORDED_AT)
        for name, text in entry.json_text.items():
            # jsonb keeps values, not spelling (numbers as exact decimals): what it hands back
            # must encode to the canonical text the hash covered.
            assert encode_reference(json.loads(text)) == encode_reference(entry.row[name])


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({"arguments": {"k": "nul \x00"}}, "arguments contains a NUL character"),
        ({"client_info": {"name": "\ud800"}}, "client_info: "),
        ({"nan": float("nan")}, "data: "),
    ],
)
def test_unstorable_json_columns_make_the_event_malformed(data, error):
    envelope = {
        "id": str(uuid.uuid4()),
        "org_id": ORGS[0],
        "ts": RECORDED_AT.isoformat(),
        "source": "proxy",
        "type": "tool_call",
        "actor": {},
        "data": data,
    }
    with pytest.raises(MalformedEvent, match=error):
        audit_rows.envelope_row(Incoming(envelope, "direct:1", from_json=False), RECORDED_AT)


def _same(a, b) -> bool:
    """Equal values of the same types all the way down (1 and 1.0 differ here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(map(_same, a, b))
    return a == b or (a != a and b != b)  # NaN


@settings(max_examples=200, deadline=None)
@given(
    json_values.map(lambda v: json.dumps(v, ensure_ascii=False))
    | st.sampled_from(
        [
            "[18446744073709551616, -9223372036854775809, 9223372036854775807]",
            '{"n": NaN, "i": -Infinity}',
            '"\\ud800 lone"',
            "[1e400]",
            '{"a": 1, "a": 2}',
            "[1.0, -0.0, 1E+2]",
        ]
    )
)
def test_stream_entries_parse_to_what_json_parses(text):
    # The writer parses with orjson where it gives the same values as json, and with json else.
    from compliance.audit.drainer import _loads

    raw = text.encode("utf-8", "surrogatepass")
    assert _same(_loads(raw), json.loads(raw))
