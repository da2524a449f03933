"""Ingestion mappers and endpoint on hostile payloads.

Every provider's documented fixture (tests/fixtures/ingest/) is mutated: a field replaced by a
value of another type, dropped, made huge, or buried in junk. `providers.parse` must answer with
items or rejections, or a `PayloadError` (a 4xx), never another exception; the endpoint, with a
correct signature, must never answer 5xx and must answer problem+json for every 4xx.
"""

from __future__ import annotations

import base64
import copy
import gzip
import json
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from compliance.ingest import PROVIDERS, providers
from compliance.ingest.items import IngestItem, PayloadError, Rejected
from governance import ingest_signing as signing
from tests.fuzz.profiles import FUZZ, scaled

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "ingest"
DOCUMENTS = {p: json.loads((FIXTURES / f"{p}.json").read_text()) for p in PROVIDERS}
NOW = datetime(2026, 3, 6, 12, 0, tzinfo=UTC)

replacements = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**80), max_value=2**80),
        st.floats(),
        st.text(max_size=20),
        st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),
        st.just("\x00"),
        st.just("x" * 70_000),
        st.just("H4sIAAAAAAAAA"),  # a truncated base64 gzip header
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=10,
)


def locations(value: Any, here: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every path to a member or item of a JSON document."""
    found = [here]
    if isinstance(value, dict):
        for key, item in value.items():
            found.extend(locations(item, (*here, key)))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.extend(locations(item, (*here, index)))
    return found


@st.composite
def mutated(draw: st.DrawFn, provider: str) -> Any:
    document = copy.deepcopy(DOCUMENTS[provider])
    if provider == "cloudwatch" and draw(st.booleans()):
        # The decoded subscription payload, so mutations reach the log events themselves.
        blob = base64.b64decode(document["awslogs"]["data"])
        document = json.loads(gzip.decompress(blob))
    for _ in range(draw(st.integers(1, 4))):
        spots = locations(document)
        path = draw(st.sampled_from(spots))
        action = draw(st.sampled_from(["replace", "drop", "wrap", "duplicate"]))
        if not path:
            if action == "replace":
                document = draw(replacements)
            elif action == "wrap":
                document = [document, draw(replacements)]
            continue
        parent = document
        for step in path[:-1]:
            parent = parent[step]
        last = path[-1]
        if action == "replace":
            parent[last] = draw(replacements)
        elif action == "drop":
            del parent[last]
        elif action == "wrap":
            parent[last] = {"nested": [parent[last], draw(replacements)]}
        elif isinstance(parent, list):
            parent.extend([parent[last]] * draw(st.integers(1, 3)))
    return document


@st.composite
def payloads(draw: st.DrawFn) -> tuple[str, bytes]:
    provider = draw(st.sampled_from(PROVIDERS))
    document = draw(mutated(provider))
    text = json.dumps(document, allow_nan=True).encode()
    if provider in ("portkey", "cloudflare") and isinstance(document, list) and draw(st.booleans()):
        text = b"\n".join(json.dumps(r, allow_nan=True).encode() for r in document)  # NDJSON
    return provider, text


def check_batch(provider: str, body: bytes) -> None:
    try:
        batch = providers.parse(provider, body, now=NOW)
    except PayloadError as exc:
        assert 400 <= exc.status < 500 and exc.code and exc.detail
        return
    for item in batch.items:
        assert isinstance(item, (IngestItem, Rejected))
        if isinstance(item, Rejected):
            assert item.reason
        else:
            json.dumps(item.data, allow_nan=False).encode("utf-8")
    if batch.kinds:
        assert len(batch.kinds) == len(batch.items)


@FUZZ
@given(payload=payloads())
@example(payload=("otlp", b'{"resourceSpans":[{"scopeSpans":[{"spans":[7]}]}]}'))
@example(payload=("datadog", b'{"data":{"attributes":{"spans":[{"meta":[]}]}}}'))
@example(payload=("cloudwatch", b'{"awslogs":{"data":"H4sIAAAAAAAAA"}}'))
@example(payload=("generic", b"[" * 50_000))
def test_every_mapper_answers_items_rejections_or_a_payload_error(
    payload: tuple[str, bytes],
) -> None:
    check_batch(*payload)


@FUZZ
@given(provider=st.sampled_from(PROVIDERS), body=st.binary(max_size=200))
def test_arbitrary_bytes_never_escape_as_an_exception(provider: str, body: bytes) -> None:
    check_batch(provider, body)


@pytest.fixture
def sources(db, acme, alice):
    from governance.services.ingest_sources import ingest_source_create

    return {
        provider: ingest_source_create(
            org=acme, actor=alice, name=f"{provider} feed", provider=provider
        )
        for provider in PROVIDERS
    }


@scaled(40)
@given(payload=payloads())
def test_the_endpoint_never_answers_5xx_to_a_signed_hostile_payload(
    client, sources, payload: tuple[str, bytes]
) -> None:
    provider, body = payload
    source, secret = sources[provider]
    answer = client.post(
        f"/api/v1/ingest/{provider}",
        data=body,
        content_type="application/json",
        headers={
            "X-Igris-Source": str(source.id),
            "X-Igris-Signature": signing.sign(secret, body, int(time.time())),
        },
    )
    assert answer.status_code < 500
    document = answer.json()
    if answer.status_code >= 400:
        assert answer["Content-Type"] == "application/problem+json"
        assert document["code"] and document["detail"]
    else:
        assert set(document) >= {"accepted", "rejected"}
