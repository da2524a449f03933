"""The JSON-RPC parser and the protocol-era header rules on hostile input.

Whatever the bytes, `parse_body` returns a Message (or a batch of them) or raises
`JsonRpcError`; whatever the headers, `eras.classify` returns an Era or raises `JsonRpcError`;
and every error it raises can be written as a JSON-RPC error body.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from proxy import eras, jsonrpc
from proxy.jsonrpc import JsonRpcError, Message
from tests.fuzz.profiles import FUZZ

# Strings with the characters that break encoders: NUL, lone surrogates, non-BMP, controls.
nasty_text = st.text(
    st.one_of(
        st.characters(),
        st.characters(categories=["Cs"]),
        st.sampled_from(["\x00", "\u2028", "\U0001f600", '"', "\\"]),
    ),
    max_size=40,
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(),  # NaN and infinities become NaN / Infinity tokens below
    nasty_text,
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)
    ),
    max_leaves=20,
)
ids = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(max_size=300),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
)
methods = st.one_of(
    st.sampled_from(
        ["initialize", "tools/call", "tools/list", "resources/read", "prompts/get", "ping", ""]
    ),
    st.text(max_size=250),
    json_values,
)


@st.composite
def messages(draw: st.DrawFn) -> dict[str, Any]:
    """Objects near the JSON-RPC shape, each member possibly missing or of the wrong type."""
    message: dict[str, Any] = {}
    if draw(st.booleans()):
        message["jsonrpc"] = draw(st.one_of(st.just("2.0"), json_values))
    if draw(st.booleans()):
        message["id"] = draw(ids)
    if draw(st.integers(0, 3)):
        message["method"] = draw(methods)
    if draw(st.booleans()):
        message["params"] = draw(
            st.one_of(
                json_values,
                st.fixed_dictionaries(
                    {},
                    optional={
                        "name": json_values,
                        "uri": json_values,
                        "arguments": json_values,
                        "protocolVersion": json_values,
                        "_meta": json_values,
                    },
                ),
            )
        )
    for member in draw(st.lists(st.sampled_from(["result", "error"]), max_size=2)):
        message[member] = draw(json_values)
    return message


def encode(value: Any, *, ascii_only: bool) -> bytes:
    # ensure_ascii writes lone surrogates as \ud800 escapes; without it they become the raw
    # bytes json itself would read back with surrogatepass.
    text = json.dumps(value, ensure_ascii=ascii_only, allow_nan=True)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    kind = draw(st.sampled_from(["bytes", "message", "batch", "json", "nested", "duplicate"]))
    if kind == "bytes":
        return draw(st.binary(max_size=300))
    if kind == "nested":
        depth = draw(st.integers(1, 20_000))
        opener = draw(st.sampled_from([b"[", b'{"a":', b'{"jsonrpc":"2.0","method":"x","params":']))
        return opener * depth
    if kind == "duplicate":
        # Duplicate members: json keeps the last one; the parser must judge what it kept.
        first, second = draw(messages()), draw(messages())
        inner = encode(first, ascii_only=True)[1:-1] + b"," + encode(second, ascii_only=True)[1:-1]
        return b"{" + inner.strip(b",") + b"}"
    ascii_only = draw(st.booleans())
    if kind == "message":
        return encode(draw(messages()), ascii_only=ascii_only)
    if kind == "batch":
        return encode(draw(st.lists(messages(), max_size=3)), ascii_only=ascii_only)
    return encode(draw(json_values), ascii_only=ascii_only)


def assert_writable(exc: JsonRpcError) -> None:
    body = json.loads(jsonrpc.dumps(exc.body()))
    assert body["jsonrpc"] == "2.0"
    assert isinstance(body["error"]["code"], int)
    assert body["error"]["message"]
    assert 400 <= exc.status < 500


@FUZZ
@given(body=bodies())
@example(body=b"[" * 100_000)  # RecursionError escaped parse_body (500 from the proxy)
@example(body=b'{"a":' * 100_000)
@example(body=b'{"jsonrpc":"2.0","id":"\\ud800","method":"ping"}')  # unencodable id echo
@example(body=b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"x":"\xed\xa0\x80"}}')
@example(body=b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":NaN}}')
@example(body=b'{"jsonrpc":"2.0","id":1,"method":"ping","params":{"n":-Infinity}}')
@example(body=b'{"jsonrpc":"2.0","id":1,"id":true,"method":"ping"}')
@example(body=b'{"jsonrpc":"2.0","id":' + b"9" * 5000 + b',"method":"ping"}')
@example(body=b"\xff\xfe\x00\x00")
def test_parse_body_returns_messages_or_a_json_rpc_error(body: bytes) -> None:
    try:
        parsed = jsonrpc.parse_body(body)
    except JsonRpcError as exc:
        assert exc.code in (jsonrpc.PARSE_ERROR, jsonrpc.INVALID_REQUEST)
        assert_writable(exc)
        return
    for message in parsed if isinstance(parsed, list) else [parsed]:
        assert isinstance(message, Message)
        assert message.kind in ("request", "notification", "response")
        assert message.params is None or isinstance(message.params, dict)
        assert message.name is None or isinstance(message.name, str)
        assert message.arguments is None or isinstance(message.arguments, dict)
        # Whatever was accepted can be echoed back and recorded.
        jsonrpc.dumps(jsonrpc.error_response(message.id, jsonrpc.INVALID_REQUEST, "x"))
        json.dumps(message.raw, ensure_ascii=False).encode("utf-8")


@FUZZ
@given(value=st.one_of(json_values, messages()))
def test_parse_message_accepts_only_objects_with_a_valid_shape(value: Any) -> None:
    try:
        message = jsonrpc.parse_message(value)
    except JsonRpcError as exc:
        assert exc.code == jsonrpc.INVALID_REQUEST
        assert exc.id is None or isinstance(exc.id, (int, str))
        return
    assert isinstance(value, dict) and value.get("jsonrpc") == "2.0"
    if message.kind == "request":
        assert isinstance(message.id, (int, str)) and not isinstance(message.id, bool)


header_names = st.sampled_from(
    ["mcp-protocol-version", "mcp-method", "mcp-name", "mcp-session-id", "content-type"]
)
header_values = st.one_of(
    st.sampled_from([*eras.SUPPORTED_VERSIONS, "tools/call", "echo", "=?base64??="]),
    st.text(st.characters(max_codepoint=255), max_size=40),
    st.builds(lambda s: f"=?base64?{s}?=", st.text(max_size=20)),
)


@FUZZ
@given(message=messages(), headers=st.dictionaries(header_names, header_values, max_size=4))
@example(
    message={"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"_meta": [1]}},
    headers={"mcp-protocol-version": "2026-07-28", "mcp-method": "tools/call"},
)  # AttributeError on a list _meta (500 from the proxy)
@example(
    message={"jsonrpc": "2.0", "id": 1, "method": "ping", "params": {"_meta": "x"}},
    headers={},
)
def test_era_rules_return_an_era_or_a_json_rpc_error(
    message: dict[str, Any], headers: dict[str, str]
) -> None:
    try:
        msg = jsonrpc.parse_message(message)
        era = eras.classify(headers, msg)
    except JsonRpcError as exc:
        assert_writable(exc)
        return
    assert era.version in eras.SUPPORTED_VERSIONS
    info = eras.client_info(msg)
    assert info is None or all(isinstance(v, str) for v in info.values())
    slot = eras.modern_slot("key:1", "server", msg)
    assert slot.startswith("igm_") and eras.modern_session_id(slot, 0) == slot
    assert (
        eras.modern_session_id(slot, 1).startswith("igm_")
        and eras.modern_session_id(slot, 1) != slot
    )
