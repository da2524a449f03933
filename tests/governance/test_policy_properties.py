"""Properties of the policy engine, checked against a naive reference implementation.

The reference below re-implements the documented semantics (governance/policy/rules.py) in the
most direct way: a loop over the rules with fnmatch, plain comparisons and minute arithmetic,
and no index. The engine must agree with it on random rule lists and calls.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from governance.policy import CallContext, PolicySnapshot, PolicyValidationError, validate_rules
from governance.policy.conditions import GlobSet
from governance.policy.index import GlobIndex, bits

SERVERS = ["prod-db", "prod-web", "dev-db"]
SERVER_GLOBS = ["prod-*", "*-db", "dev-?b", "prod-db", "*", "p*b"]
METHODS = ["tools/call", "tools/list", "resources/read", "prompts/get"]
NAMES = ["read_file", "read_dir", "write_file", "delete_x", "list", "file:///etc/passwd"]
NAME_GLOBS = ["read_*", "*_file", "delete_?", "list", "*", "re*_f*", "file:///etc/*", "*e_*"]
KEYS = ["k1", "k2", "k3"]
TAGS = ["ci", "prod", "batch"]
ROLES = ["owner", "developer", "auditor"]
PATHS = ["path", "options.recursive", "items.0.id", "n", "tags"]
STRINGS = ["/etc/passwd", "/tmp/x", "a", "", "b2", "passwd"]
REGEXES = ["^/etc/", "passwd$", "[0-9]", "a", r"^\w+$"]
ZONES = ["UTC", "Europe/Paris", "America/New_York", "Asia/Kolkata"]
DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
CLOCKS = ["00:00", "06:00", "09:00", "12:30", "17:00", "22:00"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-3, 3),
    st.floats(-3, 3, allow_nan=False),
    st.sampled_from(STRINGS),
)
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["id", "x", "0"]), inner, max_size=3),
    ),
    max_leaves=6,
)


@st.composite
def conditions(draw: st.DrawFn) -> dict[str, Any]:
    op = draw(
        st.sampled_from(
            [
                "eq",
                "ne",
                "in",
                "not_in",
                "glob",
                "regex",
                "contains",
                "lt",
                "le",
                "gt",
                "ge",
                "exists",
            ]
        )
    )
    condition: dict[str, Any] = {"path": draw(st.sampled_from(PATHS)), "op": op}
    if op in ("eq", "ne", "contains"):
        condition["value"] = draw(json_values)
    elif op in ("in", "not_in"):
        condition["value"] = draw(st.lists(json_values, min_size=1, max_size=3))
    elif op == "glob":
        condition["value"] = draw(st.sampled_from(["/etc/*", "*x", "?", "*", "a", "*ss*"]))
    elif op == "regex":
        condition["value"] = draw(st.sampled_from(REGEXES))
    elif op in ("lt", "le", "gt", "ge"):
        condition["value"] = draw(
            st.one_of(st.integers(-3, 3), st.floats(-3, 3), st.sampled_from(STRINGS))
        )
    elif draw(st.booleans()):
        condition["value"] = draw(st.booleans())
    return condition


@st.composite
def time_windows(draw: st.DrawFn) -> dict[str, Any]:
    window: dict[str, Any] = {"tz": draw(st.sampled_from(ZONES))}
    if draw(st.booleans()):
        window["days"] = draw(st.lists(st.sampled_from(DAYS), min_size=1, max_size=7, unique=True))
    if "days" not in window or draw(st.booleans()):
        start, end = draw(
            st.tuples(st.sampled_from(CLOCKS), st.sampled_from([*CLOCKS[1:], "24:00"])).filter(
                lambda pair: pair[0] != pair[1]
            )
        )
        window["start"], window["end"] = start, end
    return window


def some(values: list[str]) -> st.SearchStrategy[list[str]]:
    return st.lists(st.sampled_from(values), min_size=1, max_size=3)


@st.composite
def rule_documents(draw: st.DrawFn, rule_id: str) -> dict[str, Any]:
    match: dict[str, Any] = {}
    optional = {
        "servers": some(SERVER_GLOBS),
        "methods": some(METHODS),
        "tools": some(NAME_GLOBS),
        "keys": some(KEYS),
        "key_tags": some(TAGS),
        "roles": some(ROLES),
        "arguments": st.lists(conditions(), min_size=1, max_size=2),
        "time": time_windows(),
    }
    for key, strategy in optional.items():
        if draw(st.integers(0, 3)) == 0:
            match[key] = draw(strategy)
    document: dict[str, Any] = {
        "id": rule_id,
        "action": draw(st.sampled_from(["allow", "deny", "alert"])),
        "match": match,
    }
    if draw(st.integers(0, 5)) == 0:
        document["enabled"] = False
    return document


@st.composite
def policies(draw: st.DrawFn) -> list[dict[str, Any]]:
    size = draw(st.integers(0, 8))
    return [draw(rule_documents(f"r{i}")) for i in range(size)]


arguments = st.one_of(
    st.none(),
    st.fixed_dictionaries(
        {},
        optional={
            "path": st.one_of(st.sampled_from(STRINGS), scalars),
            "options": st.one_of(
                st.fixed_dictionaries({}, optional={"recursive": scalars}), scalars
            ),
            "items": st.lists(st.fixed_dictionaries({}, optional={"id": scalars}), max_size=2),
            "n": scalars,
            "tags": st.one_of(st.lists(scalars, max_size=3), json_values),
        },
    ),
)


@st.composite
def calls(draw: st.DrawFn, method: str | None = None) -> CallContext:
    method = method or draw(st.sampled_from([*METHODS, "vendor/other"]))
    return CallContext(
        org_id="acme",
        server_slug=draw(st.sampled_from(SERVERS)),
        method=method,
        name=draw(st.one_of(st.none(), st.sampled_from(NAMES))),
        arguments=draw(arguments),
        key_id=draw(st.one_of(st.none(), st.sampled_from(KEYS))),
        key_tags=frozenset(draw(st.lists(st.sampled_from(TAGS), max_size=2))),
        role=draw(st.one_of(st.none(), st.sampled_from(ROLES))),
        now=draw(st.datetimes(datetime(2025, 1, 1), datetime(2027, 1, 1), timezones=st.just(UTC))),
    )


# --- the naive reference -------------------------------------------------------------------------

MISSING = object()


def ref_resolve(arguments: Any, path: str) -> Any:
    current = arguments
    for segment in path.split("."):
        if isinstance(current, dict):
            if segment not in current:
                return MISSING
            current = current[segment]
        elif isinstance(current, list) and segment.isdigit() and int(segment) < len(current):
            current = current[int(segment)]
        else:
            return MISSING
    return current


def ref_normal(value: Any) -> Any:
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, (int, float)):
        return ("number", value)
    if isinstance(value, (list, tuple)):
        return ("list", tuple(ref_normal(v) for v in value))
    if isinstance(value, dict):
        return ("object", tuple(sorted((k, ref_normal(v)) for k, v in value.items())))
    return (type(value).__name__, value)


def ref_condition(condition: dict[str, Any], arguments: Any) -> bool:
    op, wanted = condition["op"], condition.get("value", True)
    value = ref_resolve(arguments, condition["path"])
    if op == "exists":
        return (value is not MISSING) == wanted
    if value is MISSING:
        return False
    if op in ("eq", "ne"):
        return (ref_normal(value) == ref_normal(wanted)) == (op == "eq")
    if op in ("in", "not_in"):
        return any(ref_normal(value) == ref_normal(w) for w in wanted) == (op == "in")
    if op == "glob":
        return isinstance(value, str) and fnmatchcase(value, wanted)
    if op == "regex":
        return isinstance(value, str) and re.search(wanted, value[:4096]) is not None
    if op == "contains":
        if isinstance(value, str):
            return isinstance(wanted, str) and wanted in value
        if isinstance(value, list):
            return any(ref_normal(v) == ref_normal(wanted) for v in value)
        if isinstance(value, dict):
            return isinstance(wanted, str) and wanted in value
        return False
    if isinstance(wanted, str) != isinstance(value, str) or isinstance(value, (bool, type(None))):
        return False
    if not isinstance(value, (str, int, float)):
        return False
    return {
        "lt": value < wanted,
        "le": value <= wanted,
        "gt": value > wanted,
        "ge": value >= wanted,
    }[op]


def ref_time(window: dict[str, Any], now: datetime) -> bool:
    """Minutes since Monday 00:00 local, against each day's interval (wrapping the week)."""
    local = now.astimezone(ZoneInfo(window["tz"]))
    t = local.weekday() * 1440 + local.hour * 60 + local.minute
    start = int(window.get("start", "00:00")[:2]) * 60 + int(window.get("start", "00:00")[3:])
    end = int(window.get("end", "24:00")[:2]) * 60 + int(window.get("end", "24:00")[3:])
    length = end - start if end > start else end + 1440 - start
    for day in window.get("days", DAYS):
        begin = DAYS.index(day) * 1440 + start
        if begin <= t < begin + length or begin <= t + 10080 < begin + length:
            return True
    return False


def ref_matches(document: dict[str, Any], call: CallContext) -> bool:
    m = document["match"]
    name = call.name
    checks = [
        "methods" not in m or call.method in m["methods"],
        "tools" not in m or (name is not None and any(fnmatchcase(name, g) for g in m["tools"])),
        "servers" not in m or any(fnmatchcase(call.server_slug, g) for g in m["servers"]),
        "keys" not in m or call.key_id in m["keys"],
        "key_tags" not in m or bool(set(m["key_tags"]) & call.key_tags),
        "roles" not in m or call.role in m["roles"],
        "time" not in m or ref_time(m["time"], call.now),
        all(ref_condition(c, call.arguments) for c in m.get("arguments", [])),
    ]  # fmt: skip
    return all(checks)


def ref_decide(
    documents: list[dict[str, Any]], posture: str, call: CallContext
) -> tuple[str, str | None]:
    for document in documents:
        if document.get("enabled", True) and ref_matches(document, call):
            return document["action"], document["id"]
    return posture, None


def build(documents: list[dict[str, Any]], posture: str) -> PolicySnapshot:
    return PolicySnapshot.from_documents(
        org_id="acme", version=1, posture=posture, documents=documents
    )


postures = st.sampled_from(["allow", "deny"])
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(documents=policies(), posture=postures, call=calls())
def test_the_engine_agrees_with_a_naive_first_match_loop(
    documents: list[dict[str, Any]], posture: str, call: CallContext
) -> None:
    decision = build(documents, posture).decide(call)

    assert (decision.action, decision.rule_id) == ref_decide(documents, posture, call)


@SETTINGS
@given(documents=policies(), posture=postures, call=calls())
def test_the_posture_decides_exactly_when_no_rule_matches(
    documents: list[dict[str, Any]], posture: str, call: CallContext
) -> None:
    decision = build(documents, posture).decide(call)
    matched = any(d.get("enabled", True) and ref_matches(d, call) for d in documents)

    assert (decision.rule_id is None) is (not matched)
    assert (decision.reason == f"default posture {posture}") is (not matched)
    if not matched:
        assert decision.action == posture


@SETTINGS
@given(documents=policies(), posture=postures, call=calls())
def test_explain_reaches_the_same_decision_and_skips_exactly_the_earlier_rules(
    documents: list[dict[str, Any]], posture: str, call: CallContext
) -> None:
    policy = build(documents, posture)

    explanation = policy.explain(call)

    assert explanation.decision == policy.decide(call)
    end = explanation.decision.rule_index
    assert [s.rule_index for s in explanation.skipped] == list(
        range(len(documents) if end is None else end)
    )


@SETTINGS
@given(
    documents=policies(),
    posture=postures,
    call=calls(),
    extra=rule_documents("extra"),
    data=st.data(),
)
def test_adding_a_rule_after_the_matching_rule_never_changes_the_decision(
    documents: list[dict[str, Any]],
    posture: str,
    call: CallContext,
    extra: dict[str, Any],
    data: st.DataObject,
) -> None:
    before = build(documents, posture).decide(call)
    assume(before.rule_index is not None)
    assert before.rule_index is not None
    position = data.draw(st.integers(before.rule_index + 1, len(documents)))

    after = build([*documents[:position], extra, *documents[position:]], posture).decide(call)

    assert after == before


def tools_call(listing: CallContext, tool: str, arguments: Any) -> CallContext:
    return CallContext(
        org_id="acme",
        server_slug=listing.server_slug,
        method="tools/call",
        name=tool,
        arguments=arguments,
        key_id=listing.key_id,
        key_tags=listing.key_tags,
        role=listing.role,
        now=listing.now,
    )


@SETTINGS
@given(
    documents=policies(),
    posture=postures,
    listing=calls("tools/list"),
    tool=st.sampled_from(NAMES),
    attempts=st.lists(arguments, min_size=1, max_size=4),
)
def test_tools_list_hides_a_tool_only_if_every_call_of_it_is_denied(
    documents: list[dict[str, Any]],
    posture: str,
    listing: CallContext,
    tool: str,
    attempts: list[Any],
) -> None:
    policy = build(documents, posture)
    bare = policy.decide(tools_call(listing, tool, {})).allowed
    some_allowed = bare or any(
        policy.decide(tools_call(listing, tool, args)).allowed for args in attempts
    )

    visible = policy.filter_tools(listing, [{"name": tool}]) == [{"name": tool}]

    if some_allowed:
        assert visible
    if not any("arguments" in d["match"] for d in documents):
        # Without argument conditions, listing is exactly "a call would be allowed".
        assert visible is bare


wild_json = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(
    documents=policies(), posture=postures, call=calls(), args=wild_json, name=st.text(max_size=30)
)
def test_evaluation_never_raises_on_arbitrary_json_arguments(
    documents: list[dict[str, Any]], posture: str, call: CallContext, args: Any, name: str
) -> None:
    policy = build(documents, posture)
    wild = CallContext(
        org_id="acme", server_slug=call.server_slug, method=call.method, name=name, arguments=args,
        key_id=call.key_id, key_tags=call.key_tags, role=call.role, now=call.now,
    )  # fmt: skip

    assert policy.decide(wild).action in ("allow", "deny", "alert")
    assert policy.explain(wild).decision == policy.decide(wild)
    policy.filter_tools(wild, [{"name": name}, {"name": args}])


@settings(max_examples=200, deadline=None)
@given(documents=st.one_of(wild_json, st.lists(st.dictionaries(
    st.sampled_from(["id", "action", "match", "enabled", "message", "rate_limit", "x"]),
    st.one_of(wild_json, st.sampled_from(["deny", "allow", "r1"]), st.fixed_dictionaries(
        {}, optional={k: wild_json for k in ["tools", "servers", "arguments", "time", "limit"]})),
))))  # fmt: skip
def test_validation_only_ever_raises_a_policy_validation_error(documents: Any) -> None:
    try:
        rules = validate_rules(documents)
    except PolicyValidationError as exc:
        assert exc.errors
        assert all(set(e) == {"index", "field", "message"} for e in exc.errors)
    else:
        assert len(rules) == len(documents)


@settings(max_examples=200, deadline=None)
@given(
    window=time_windows(),
    now=st.datetimes(datetime(2025, 1, 1), datetime(2027, 1, 1), timezones=st.just(UTC)),
)
def test_a_time_window_is_checked_in_its_own_time_zone(
    window: dict[str, Any], now: datetime
) -> None:
    policy = build([{"id": "r1", "action": "deny", "match": {"time": window}}], "allow")
    call = CallContext(org_id="acme", server_slug="prod-db", method="tools/call", now=now)

    assert (policy.decide(call).rule_id == "r1") is ref_time(window, now)
    # The same instant expressed in another zone is the same decision.
    shifted = CallContext(
        org_id="acme", server_slug="prod-db", method="tools/call",
        now=now.astimezone(ZoneInfo("Pacific/Auckland")),
    )  # fmt: skip
    assert policy.decide(shifted) == policy.decide(call)


@settings(max_examples=300, deadline=None)
@given(mask=st.one_of(st.integers(0, 2**64), st.integers(0, 2**5000)))
def test_bits_lists_every_set_bit_lowest_first(mask: int) -> None:
    assert list(bits(mask)) == [i for i in range(mask.bit_length()) if mask >> i & 1]


short_text = st.text(alphabet="ab/.", max_size=6)


@settings(max_examples=300, deadline=None)
@given(
    globs=st.lists(st.lists(st.text(alphabet="ab/.*?", min_size=1, max_size=8), max_size=3)),
    name=st.one_of(short_text, st.builds(lambda a, b: a + "x" * 300 + b, short_text, short_text)),
)
def test_the_glob_index_never_drops_a_rule_whose_glob_matches(
    globs: list[list[str]], name: str
) -> None:
    index = GlobIndex()
    for i, patterns in enumerate(globs):
        index.add(1 << i, patterns or None)

    mask = index.mask(name)

    for i, patterns in enumerate(globs):
        if not patterns or any(fnmatchcase(name, glob) for glob in patterns):
            assert mask >> i & 1, (patterns, name)


@settings(max_examples=300, deadline=None)
@given(
    patterns=st.lists(st.text(alphabet="ab/.*?", min_size=1, max_size=8), min_size=1, max_size=4),
    name=short_text,
)
def test_glob_sets_agree_with_fnmatch(patterns: list[str], name: str) -> None:
    expected = any(fnmatchcase(name, pattern) for pattern in patterns)

    assert GlobSet(tuple(patterns)).matches(name) is expected
