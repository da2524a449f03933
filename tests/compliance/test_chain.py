"""The canonical encoding and hash chain (compliance/audit/chain.py): pure, no database."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from compliance.audit.chain import (
    CHAINED_FIELDS,
    GENESIS,
    CanonicalError,
    canonical,
    canonical_json_native,
    checkpoint_text,
    encode_reference,
    encode_value,
    event_hash,
    format_number,
    link,
    public_key_id,
    sign_text,
    signature_valid,
    signing_key_from_secret,
)

ORG = uuid.UUID("5b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": 2}, '{"a":2,"b":1}'),
        ({"a": {"z": None, "y": [True, False]}}, '{"a":{"y":[true,false],"z":null}}'),
        ([], "[]"),
        ({}, "{}"),
        ((1, "x"), '[1,"x"]'),
        ("é ü 日本", '"é ü 日本"'),
        ("line\nbreak\ttab", '"line\\nbreak\\ttab"'),
        ('quote " and \\ backslash', '"quote \\" and \\\\ backslash"'),
        ("\x01\x1f", '"\\u0001\\u001f"'),
        ("\u2028\x7f", '"\u2028\x7f"'),
        (12, "12"),
        (12.0, "12"),
        (-0.0, "0"),
        (1.5, "1.5"),
        (0.1 + 0.2, "0.30000000000000004"),
        (1e-7, "0.0000001"),
        (-2.5e-5, "-0.000025"),
        (1e21, "1000000000000000000000"),
        (1.5e300, "15" + "0" * 299),
        (2**64, "18446744073709551616"),
        (-(2**70), str(-(2**70))),
        (
            uuid.UUID("5B1F2C3D-4E5F-4A6B-8C7D-9E0F1A2B3C4D"),
            '"5b1f2c3d-4e5f-4a6b-8c7d-9e0f1a2b3c4d"',
        ),
        (datetime(2026, 11, 25, 22, 41, 5, 123, tzinfo=UTC), '"2026-11-25T22:41:05.000123Z"'),
        (
            datetime(2026, 11, 26, 0, 41, 5, tzinfo=timezone(timedelta(hours=2))),
            '"2026-11-25T22:41:05.000000Z"',
        ),
    ],
)
def test_it_encodes_values_canonically(value, expected):
    assert encode_value(value) == expected
    assert encode_value({"k": [value]}) == f'{{"k":[{expected}]}}'  # the C-encoder path too
    assert encode_reference(value) == expected


@pytest.mark.parametrize(
    "value",
    [
        float("nan"),
        float("inf"),
        -float("inf"),
        datetime(2026, 1, 1),  # naive
        {1: "non-string key"},
        {("a",): 1},
        {"a", "b"},
        b"bytes",
        object(),
    ],
)
def test_it_refuses_what_has_no_canonical_form(value):
    with pytest.raises(CanonicalError):
        canonical({"value": value})


def test_it_refuses_lone_surrogates():
    with pytest.raises(CanonicalError):
        canonical({"text": "\ud800"})


def test_canonical_is_utf8_without_whitespace_and_ignores_the_hash_itself():
    event = {"type": "org.created", "data": {"name": "Acmé"}, "hash": "f" * 64}
    assert canonical(event) == '{"data":{"name":"Acmé"},"type":"org.created"}'.encode()


def test_link_is_sha256_of_the_previous_hash_text_and_the_canonical_bytes():
    expected = hashlib.sha256(("0" * 64 + "{}").encode()).hexdigest()
    assert link(GENESIS, b"{}") == expected
    assert link(expected, b"{}") == hashlib.sha256((expected + "{}").encode()).hexdigest()


@pytest.mark.parametrize("prev", ["", "0" * 63, "G" * 64, "A" * 64, None])
def test_link_refuses_a_malformed_previous_hash(prev):
    with pytest.raises(ValueError, match="prev_hash"):
        link(prev, b"{}")


def test_checkpoint_text_is_the_documented_five_lines():
    created = datetime(2026, 11, 25, 22, 41, 5, 7, tzinfo=UTC)
    text = checkpoint_text(org_id=str(ORG).upper(), seq=42, hash="a" * 64, created_at=created)
    assert text == f"igris-audit\n{ORG}\n42\n{'a' * 64}\n2026-11-25T22:41:05.000007Z"


def test_a_checkpoint_signature_verifies_only_for_its_text_and_key():
    key = signing_key_from_secret("secret one")
    text = "igris-audit\nx\n1\nh\nt"
    signature = sign_text(key, text)
    assert signature_valid(key.public_key(), text, signature)
    assert not signature_valid(key.public_key(), text + "!", signature)
    other = signing_key_from_secret("secret two").public_key()
    assert not signature_valid(other, text, signature)
    assert not signature_valid(key.public_key(), text, "zz")
    assert public_key_id(key.public_key()) != public_key_id(other)
    assert len(public_key_id(other)) == 16


# --- properties -------------------------------------------------------------------------------

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text()
)
json_values = st.recursive(
    json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)
# Text without lone surrogates (which UTF-8 cannot carry and canonical refuses).
texts = st.text(alphabet=st.characters(exclude_categories=("Cs",)))


def _no_surrogates(value) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


@given(json_values.filter(_no_surrogates))
def test_canonical_round_trips_through_json_unchanged(value):
    first = canonical({"v": value})
    assert canonical(json.loads(first)) == first
    assert canonical({"v": value}) == first  # deterministic


@given(json_values)
def test_the_fast_path_writes_exactly_what_the_reference_encoder_writes(value):
    for wrapped in ({"v": value}, [value, {"w": value}]):
        try:
            expected = encode_reference(wrapped)
        except CanonicalError:
            with pytest.raises(CanonicalError):
                encode_value(wrapped)
            continue
        assert encode_value(wrapped) == expected
        assert encode_value(wrapped, keys_checked=True) == expected


# Floats spread over every binary exponent, where repr and orjson pick their notation differently.
wide_floats = st.floats(allow_nan=False, allow_infinity=False) | st.builds(
    lambda mantissa, exponent: mantissa * 2.0**exponent,
    st.floats(min_value=-2, max_value=2, allow_nan=False),
    st.integers(min_value=-1074, max_value=1023),
).filter(lambda x: x not in (float("inf"), float("-inf")))


@given(json_values | st.dictionaries(st.text(), wide_floats | st.lists(wide_floats), max_size=6))
def test_the_orjson_path_writes_exactly_what_the_reference_encoder_writes(value):
    # Lone surrogates (text() draws them), integers past 64 bits and every float notation.
    for wrapped in ({"v": value}, [value, {"w": value}], value):
        try:
            expected = encode_reference(wrapped).encode("utf-8")
        except (CanonicalError, UnicodeEncodeError):
            with pytest.raises(CanonicalError):
                canonical_json_native(wrapped)
            continue
        assert canonical_json_native(wrapped) == expected


@pytest.mark.parametrize(
    "value",
    [
        {"at": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)},  # orjson has its own datetime form
        {"id": uuid.UUID(int=7)},
        {"n": 12.0, "m": -0.0, "big": 2**64, "tiny": 1e-7, "huge": 1e22},
        {"s": '\x00\x1f"\\ é \u2028 \U0001f600'},
        {1: "non-string key"},
        {"e": Decimal("1.5")},
    ],
)
def test_the_orjson_path_sends_what_it_cannot_write_to_the_reference_encoder(value):
    try:
        expected = encode_reference(value).encode("utf-8")
    except CanonicalError:
        with pytest.raises(CanonicalError):
            canonical_json_native(value)
        return
    assert canonical_json_native(value) == expected


@given(st.dictionaries(texts, json_values.filter(_no_surrogates), max_size=8))
def test_canonical_does_not_depend_on_key_order(value):
    reversed_order = dict(reversed(list(value.items())))
    assert canonical(reversed_order) == canonical(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_number_encoding_is_lossless(number):
    text = format_number(number)
    assert "e" not in text.lower()
    assert float(text) == number or (number == 0 and text == "0")


@given(st.floats(allow_nan=False, allow_infinity=False) | st.sampled_from([0.1, 1e15 + 0.5, 5e-5]))
def test_number_shortcuts_write_what_the_decimal_definition_writes(number):
    # The documented form: the shortest round-trip decimal (repr), normalized, in plain notation.
    expected = "0" if number == 0 else format(Decimal(repr(number)).normalize(), "f")
    assert format_number(number) == expected


chain_values = st.one_of(
    st.none(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.floats(allow_nan=False, allow_infinity=False),
    texts,
    st.uuids(),
    st.datetimes(timezones=st.just(UTC)),
    st.dictionaries(texts, st.integers() | texts, max_size=3),
)


def _event(values: dict) -> dict:
    event = {name: None for name in CHAINED_FIELDS}
    event.update(seq=1, org_id=ORG)
    event.update(values)
    event["prev_hash"] = GENESIS  # link() takes only a well-formed hash here
    return event


@given(
    st.dictionaries(st.sampled_from(CHAINED_FIELDS), chain_values, max_size=6),
    st.sampled_from(CHAINED_FIELDS),
    chain_values,
)
def test_changing_any_single_field_changes_the_hash(values, name, new_value):
    event = _event(values)
    if name == "prev_hash":
        new_value = hashlib.sha256(repr(new_value).encode()).hexdigest()
    changed = {**event, name: new_value}
    if encode_value(changed[name]) == encode_value(event[name]):
        return  # the same value in canonical form (e.g. 1 and 1.0): not a change
    assert event_hash(changed) != event_hash(event)


@given(st.integers(min_value=-(2**53), max_value=2**53))
def test_an_integral_float_and_its_integer_hash_alike(number):
    # What PostgreSQL jsonb or a float column hands back must hash as what was written.
    assert encode_value(float(number)) == encode_value(number)
