"""The policy engine on hostile rule documents, arguments and regexes.

tests/governance/test_policy_properties.py checks the engine against a reference on well-formed
rules and throws loose JSON at validation; here the documents sit close to the documented shape
with one field at a time made wrong (type, size, range, zone, clock, path, pattern), the
arguments are hostile (deep, huge, of every type), and regex conditions are built from the
shapes that make backtracking engines explode.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from hypothesis import assume, example, given
from hypothesis import strategies as st

from governance.policy import (
    CallContext,
    PolicySnapshot,
    PolicyValidationError,
    UnsafeRegex,
    check_regex,
    validate_rules,
)
from governance.policy.regex_guard import MAX_REGEX_SUBJECT, compile_linear
from governance.policy.rules import OPS
from tests.fuzz.profiles import FUZZ

junk = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(),
        st.floats(),
        st.text(max_size=10),
        st.just("x" * 5000),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


def maybe(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """Mostly the valid value, sometimes anything at all."""
    return st.one_of(valid, valid, valid, junk)


paths = st.one_of(
    st.sampled_from(["path", "options.recursive", "items.0.id", "a.b.c", "0"]),
    st.text(max_size=30),
    st.just(".".join(["x"] * 17)),
    st.just("a..b"),
)
condition = st.fixed_dictionaries(
    {"path": maybe(paths), "op": maybe(st.sampled_from(OPS))},
    optional={"value": junk, "extra": junk},
)
clocks = st.one_of(
    st.sampled_from(["00:00", "09:00", "17:30", "24:00", "23:59"]),
    st.from_regex(r"\A[0-9]{1,3}:[0-9]{1,3}\Z"),
)
time_window = st.fixed_dictionaries(
    {},
    optional={
        "tz": maybe(st.sampled_from(["UTC", "Europe/Paris", "Mars/Olympus", "../../etc", ""])),
        "days": maybe(st.lists(st.sampled_from(["mon", "fri", "sun", "funday"]), max_size=3)),
        "start": maybe(clocks),
        "end": maybe(clocks),
    },
)
match = st.fixed_dictionaries(
    {},
    optional={
        "servers": maybe(st.lists(st.sampled_from(["prod-*", "*", "a b", "", "x" * 300]))),
        "methods": maybe(st.lists(st.sampled_from(["tools/call", "tools/*", "nope"]))),
        "tools": maybe(st.lists(st.text(max_size=20), max_size=3)),
        "keys": maybe(st.lists(st.text(max_size=10), max_size=3)),
        "key_tags": maybe(st.lists(st.text(max_size=10), max_size=3)),
        "roles": maybe(st.lists(st.text(max_size=10), max_size=3)),
        "arguments": maybe(st.lists(condition, max_size=4)),
        "time": maybe(time_window),
        "unknown": junk,
    },
)
rule = st.fixed_dictionaries(
    {
        "id": maybe(st.from_regex(r"\A[A-Za-z0-9_.:-]{1,64}\Z")),
        "action": maybe(st.sampled_from(["allow", "deny", "alert"])),
    },
    optional={
        "match": maybe(match),
        "message": maybe(st.text(max_size=50)),
        "description": maybe(st.text(max_size=50)),
        "enabled": maybe(st.booleans()),
        "rate_limit": maybe(
            st.fixed_dictionaries(
                {
                    "limit": maybe(st.integers(-5, 2_000_000)),
                    "window_s": maybe(st.integers(-5, 40 * 86_400)),
                    "per": maybe(st.sampled_from(["key", "session", "org", "planet"])),
                }
            )
        ),
    },
)

hostile_arguments = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**200), max_value=2**200),
        st.floats(),
        st.text(max_size=20),
        st.builds(
            lambda c, n: c * n, st.sampled_from(["a", "/", "\x00", "é"]), st.integers(0, 9000)
        ),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.dictionaries(st.sampled_from(["path", "options", "items", "0", "id", "a", "b"]), inner),
    ),
    max_leaves=25,
)


def deep(depth: int) -> Any:
    value: Any = "leaf"
    for i in range(depth):
        value = {"a": value} if i % 2 else [value]
    return value


def call(arguments: Any, name: Any = "read_file", method: str = "tools/call") -> CallContext:
    return CallContext(
        org_id="acme",
        server_slug="prod-db",
        method=method,
        name=name,
        arguments=arguments,
        key_id="k1",
        key_tags=frozenset({"ci"}),
        role="developer",
        now=datetime(2026, 3, 6, 12, 0, tzinfo=UTC),
    )


@FUZZ
@given(documents=st.lists(rule, max_size=4), arguments=hostile_arguments, name=junk)
@example(
    documents=[
        {
            "id": "r",
            "action": "deny",
            "match": {"arguments": [{"path": "a", "op": "eq", "value": 1}]},
        }
    ],
    arguments=deep(5000),
    name=None,
)
def test_a_rule_document_is_refused_clearly_or_decides_every_call(
    documents: list[Any], arguments: Any, name: Any
) -> None:
    try:
        rules = validate_rules(documents)
    except PolicyValidationError as exc:
        assert exc.errors and str(exc)
        for error in exc.errors:
            assert error["index"] is None or 0 <= error["index"] < len(documents)
            assert isinstance(error["field"], str) and error["message"]
        return
    assert len(rules) == len(documents)
    snapshot = PolicySnapshot.from_documents(
        org_id="acme", version=1, posture="deny", documents=documents
    )
    for method in ("tools/call", "resources/read"):
        context = call(arguments, name if isinstance(name, str) else None, method)
        decision = snapshot.decide(context)
        assert decision.action in ("allow", "deny", "alert")
        assert snapshot.explain(context).decision == decision
    snapshot.filter_tools(call(arguments), [{"name": name}, {}, {"name": "read_file"}])


# Regex pieces: the classic catastrophic shapes and their near misses.
atoms = st.sampled_from(
    ["a", "b", ".", r"\d", r"\w", r"\s", "[ab]", "[^a]", "(a|aa)", "(a|a?)", "(?:ab|a)", r"\1",
     "(?=a)", "(?<=a)", "(?P<n>a)", "(?(1)a|b)", "x", r"\.", "^", "$", r"\b"]
)  # fmt: skip
quantifiers = st.sampled_from(["", "", "*", "+", "?", "{2,}", "{0,30}", "*?", "++", "{25}"])


@st.composite
def patterns(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(1, 4))):
        if depth < 2 and draw(st.integers(0, 3)) == 0:
            inner = draw(patterns(depth + 1))
            parts.append(f"({inner})" + draw(quantifiers))
        else:
            parts.append(draw(atoms) + draw(quantifiers))
    return "".join(parts)


subjects = st.one_of(
    st.text(max_size=30),
    st.builds(
        lambda unit, n, tail: unit * n + tail,
        st.sampled_from(["a", "ab", "aa", "1", " ", "x.", "é"]),
        st.integers(0, MAX_REGEX_SUBJECT * 2),
        st.sampled_from(["", "!", "b", "\n", "c"]),
    ),
)


@FUZZ
@given(pattern=st.one_of(patterns(), st.text(max_size=30)), subject=subjects)
@example(pattern="(a+)+$", subject="a" * 5000 + "!")
@example(pattern="(a|aa)*c", subject="a" * 8000)
@example(pattern=".*a.*b", subject="a" * 8000)
@example(pattern="(ab|a)*c", subject="ab" * 4000)
def test_a_regex_condition_is_refused_or_runs_in_linear_time(pattern: str, subject: str) -> None:
    documents = [
        {
            "id": "r",
            "action": "deny",
            "match": {"arguments": [{"path": "text", "op": "regex", "value": pattern}]},
        }
    ]
    try:
        validate_rules(documents)
    except PolicyValidationError as exc:
        assert exc.errors[0]["field"] == "match.arguments[0].value"
        return
    # Evaluation runs on RE2 (linear in the subject, whatever the pattern).
    assert type(compile_linear(pattern)).__module__.startswith("re2")
    snapshot = PolicySnapshot.from_documents(
        org_id="acme", version=1, posture="allow", documents=documents
    )
    decision = snapshot.decide(call({"text": subject}))
    assert decision.action in ("allow", "deny")


@FUZZ
@given(
    pattern=patterns(),
    subject=st.text(st.sampled_from("ab1 x.\t"), max_size=25),
)
def test_an_accepted_regex_finds_what_python_finds_on_plain_text(
    pattern: str, subject: str
) -> None:
    """The author writes Python syntax; RE2 runs it. On short plain text (no newline, ASCII,
    where the two engines' documented semantics coincide) they must agree."""
    try:
        compiled = check_regex(pattern)
    except UnsafeRegex:
        assume(False)
        return
    expected = compiled.search(subject) is not None
    assert (compile_linear(pattern).search(subject) is not None) == expected


@FUZZ
@given(arguments=hostile_arguments, operand=junk, op=st.sampled_from(OPS), path=paths)
def test_any_valid_condition_evaluates_any_argument_without_raising(
    arguments: Any, operand: Any, op: str, path: str
) -> None:
    condition: dict[str, Any] = {"path": path, "op": op, "value": operand}
    if op == "regex":
        condition["value"] = re.escape(str(operand))[:200]
    documents = [{"id": "r", "action": "deny", "match": {"arguments": [condition]}}]
    try:
        validate_rules(documents)
    except PolicyValidationError:
        return
    snapshot = PolicySnapshot.from_documents(
        org_id="acme", version=1, posture="allow", documents=documents
    )
    assert snapshot.decide(call(arguments)).action in ("allow", "deny")
    assert snapshot.decide(call({"path": arguments, "options": arguments})).action in (
        "allow",
        "deny",
    )
