"""The pure policy engine, table by table (no Django: run with `-p no:django`)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from governance.policy import (
    CallContext,
    Decision,
    PolicySnapshot,
    PolicyValidationError,
    RateLimit,
    check_regex,
    validate_rules,
)
from governance.policy.regex_guard import MAX_REGEX_SUBJECT, UnsafeRegex

# Wednesday 4 March 2026, 10:30 UTC (11:30 in Paris).
NOW = datetime(2026, 3, 4, 10, 30, tzinfo=UTC)
PARIS = ZoneInfo("Europe/Paris")


def rule(rule_id: str = "r1", action: str = "deny", **match: Any) -> dict[str, Any]:
    return {"id": rule_id, "action": action, "match": match}


def arg(path: str, op: str, value: Any) -> dict[str, Any]:
    return {"path": path, "op": op, "value": value}


def limited(**rate_limit: Any) -> dict[str, Any]:
    return {"id": "r1", "action": "allow", "rate_limit": rate_limit}


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def snapshot(*documents: dict[str, Any], posture: str = "deny", version: int = 7) -> PolicySnapshot:
    return PolicySnapshot.from_documents(
        org_id="acme", version=version, posture=posture, documents=list(documents)
    )


def call(**overrides: Any) -> CallContext:
    fields: dict[str, Any] = {
        "org_id": "acme",
        "server_slug": "prod-db",
        "method": "tools/call",
        "name": "read_file",
        "arguments": None,
        "key_id": "k1",
        "key_tags": frozenset({"ci"}),
        "role": "developer",
        "now": NOW,
    }
    fields.update(overrides)
    return CallContext(**fields)


def decided_by(policy: PolicySnapshot, **overrides: Any) -> str | None:
    return policy.decide(call(**overrides)).rule_id


# --- first match, posture, the Decision ----------------------------------------------------------


@pytest.mark.parametrize(
    ("documents", "expected"),
    [
        ([rule("r1", "deny"), rule("r2", "allow")], "r1"),
        ([rule("r1", "allow", tools=["write_*"]), rule("r2", "alert")], "r2"),
        ([rule("r1", "allow", tools=["read_file"]), rule("r2", "deny", tools=["read_*"])], "r1"),
        # Rules land in different index buckets (suffix, exact, prefix, any): order still rules.
        (
            [
                rule("suffix", "alert", tools=["*_file"]),
                rule("exact", "deny", tools=["read_file"]),
                rule("prefix", "deny", tools=["read_*"]),
                rule("any", "deny"),
            ],
            "suffix",
        ),
        (
            [rule("prefix", "deny", tools=["re*"]), rule("exact", "allow", tools=["read_file"])],
            "prefix",
        ),
        (
            [
                rule("middle", "deny", tools=["*ad_fi*"]),
                rule("exact", "allow", tools=["read_file"]),
            ],
            "middle",
        ),
        ([rule("r1", "deny", tools=["write_*"]), rule("r2", "deny", servers=["dev-*"])], None),
    ],
)
def test_the_first_matching_rule_decides(
    documents: list[dict[str, Any]], expected: str | None
) -> None:
    assert decided_by(snapshot(*documents)) == expected


@pytest.mark.parametrize("posture", ["allow", "deny"])
def test_the_posture_decides_when_no_rule_matches(posture: str) -> None:
    policy = snapshot(rule("r1", "deny", tools=["delete_*"]), posture=posture)

    decision = policy.decide(call(name="read_file"))

    assert decision == Decision(
        action=posture,  # type: ignore[arg-type]
        rule_id=None,
        rule_index=None,
        version=7,
        message="Denied: no policy rule allows this call." if posture == "deny" else None,
        reason=f"default posture {posture}",
    )
    assert decision.allowed is (posture == "allow")


def test_an_empty_policy_applies_the_posture() -> None:
    assert snapshot(posture="allow").decide(call()).action == "allow"
    assert snapshot(posture="deny").decide(call()).action == "deny"


def test_a_decision_names_the_rule_its_position_and_the_policy_version() -> None:
    policy = snapshot(
        rule("first", "deny", tools=["write_*"]),
        {"id": "off", "action": "deny", "enabled": False},
        {
            "id": "r3",
            "action": "alert",
            "message": "reads are watched",
            "match": {"tools": ["read_*"]},
            "rate_limit": {"limit": 10, "window_s": 60, "per": "session"},
        },
        version=12,
    )

    assert policy.decide(call()) == Decision(
        action="alert",
        rule_id="r3",
        rule_index=2,
        version=12,
        message="reads are watched",
        reason="matched rule r3",
        rate_limit=RateLimit(limit=10, window_s=60, per="session"),
    )


def test_a_deny_without_a_message_tells_the_agent_which_rule_denied() -> None:
    decision = snapshot(rule("no-deletes", "deny")).decide(call())

    assert decision.action == "deny"
    assert decision.message == "Denied by policy rule no-deletes."
    assert decision.rate_limit is None


def test_disabled_rules_are_skipped() -> None:
    policy = snapshot(
        {"id": "off", "action": "allow", "enabled": False},
        rule("on", "deny", tools=["read_*"]),
        posture="allow",
    )

    assert decided_by(policy) == "on"


def test_a_snapshot_never_applies_one_organisations_rules_to_another() -> None:
    policy = snapshot(rule("r1", "allow"), posture="allow")

    decision = policy.decide(call(org_id="globex"))

    assert decision.action == "deny"
    assert decision.rule_id is None
    assert "globex" in decision.reason
    assert policy.filter_tools(call(org_id="globex", method="tools/list"), [{"name": "x"}]) == []
    assert policy.explain(call(org_id="globex")).decision == decision


def test_a_call_context_needs_an_aware_time() -> None:
    with pytest.raises(ValueError, match="aware"):
        call(now=datetime(2026, 3, 4, 10, 30))


def test_the_posture_must_be_allow_or_deny() -> None:
    with pytest.raises(ValueError, match="posture"):
        snapshot(posture="maybe")


# --- what a rule matches on ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("patterns", "method", "name", "matches"),
    [
        (["read_*"], "tools/call", "read_file", True),
        (["read_*"], "tools/call", "read_", True),
        (["read_*"], "tools/call", "Read_file", False),  # case-sensitive
        (["read_*"], "tools/call", "unread_file", False),  # anchored at both ends
        (["*_file"], "tools/call", "write_file", True),
        (["delete_?"], "tools/call", "delete_x", True),
        (["delete_?"], "tools/call", "delete_xy", False),
        (["*"], "tools/call", "anything", True),
        (["*"], "tools/list", None, False),  # no name to match
        (["[abc]"], "tools/call", "a", False),  # "[" is a literal, not a character class
        (["[abc]"], "tools/call", "[abc]", True),
        (["a.b"], "tools/call", "axb", False),  # "." is a literal
        (["list", "read_*"], "tools/call", "list", True),
        (["file:///etc/*"], "resources/read", "file:///etc/passwd", True),  # a resource uri
        (["file:///etc/*"], "resources/read", "file:///home/x", False),
        (["summarise"], "prompts/get", "summarise", True),  # a prompt name
        (["*/.ssh/*"], "resources/read", "file:///home/bob/.ssh/id_rsa", True),
    ],
)
def test_name_globs(patterns: list[str], method: str, name: str | None, matches: bool) -> None:
    policy = snapshot(rule("r1", "deny", tools=patterns), posture="allow")

    assert (decided_by(policy, method=method, name=name) == "r1") is matches


def test_the_first_match_is_found_behind_many_candidates_that_fail() -> None:
    near_misses = [
        rule(f"r{i}", "deny", tools=["read_*"], arguments=[arg("n", "eq", i)]) for i in range(40)
    ]
    policy = snapshot(*near_misses, rule("last", "alert", tools=["*_file"]), posture="allow")

    assert decided_by(policy, arguments={"n": 37}) == "r37"
    assert decided_by(policy, arguments={"n": 99}) == "last"


@pytest.mark.parametrize(
    ("name", "matches"),
    [
        ("grant_admin_role", True),
        ("x" * 300 + "admin" + "y" * 300, True),  # past the length the infix index probes
        ("x" * 600, False),
        ("admi", False),
    ],
)
def test_infix_globs_match_names_of_any_length(name: str, matches: bool) -> None:
    policy = snapshot(rule("r1", "deny", tools=["*admin*"]), posture="allow")

    assert (decided_by(policy, name=name) == "r1") is matches


@pytest.mark.parametrize(
    ("patterns", "server", "matches"),
    [
        (["prod-*"], "prod-db", True),
        (["prod-*"], "dev-db", False),
        (["*-db"], "dev-db", True),
        (["dev-?b"], "dev-db", True),
        (["prod-db"], "prod-dbx", False),
        (["dev-*", "prod-db"], "prod-db", True),
    ],
)
def test_server_globs(patterns: list[str], server: str, matches: bool) -> None:
    policy = snapshot(rule("r1", "deny", servers=patterns), posture="allow")

    assert (decided_by(policy, server_slug=server) == "r1") is matches


@pytest.mark.parametrize(
    ("methods", "method", "matches"),
    [
        (["tools/call"], "tools/call", True),
        (["tools/call"], "tools/list", False),
        (["tools/list", "resources/read"], "resources/read", True),
        (["tools/call"], "notifications/initialized", False),
    ],
)
def test_method_lists(methods: list[str], method: str, matches: bool) -> None:
    policy = snapshot(rule("r1", "deny", methods=methods), posture="allow")

    assert (decided_by(policy, method=method, name=None) == "r1") is matches


def test_a_rule_without_methods_applies_to_any_method_even_an_unknown_one() -> None:
    policy = snapshot(rule("r1", "deny", servers=["prod-*"]), posture="allow")

    assert decided_by(policy, method="vendor/custom", name=None) == "r1"


@pytest.mark.parametrize(
    ("match", "identity", "matches"),
    [
        ({"keys": ["k1", "k2"]}, {"key_id": "k1"}, True),
        ({"keys": ["k2"]}, {"key_id": "k1"}, False),
        ({"keys": ["k1"]}, {"key_id": None}, False),  # e.g. a console session, no API key
        ({"key_tags": ["ci", "batch"]}, {"key_tags": frozenset({"batch"})}, True),
        ({"key_tags": ["ci"]}, {"key_tags": frozenset({"prod"})}, False),
        ({"key_tags": ["ci"]}, {"key_tags": frozenset()}, False),
        ({"roles": ["owner", "admin"]}, {"role": "owner"}, True),
        ({"roles": ["owner"]}, {"role": "developer"}, False),
        ({"roles": ["owner"]}, {"role": None}, False),
        ({"keys": ["k1"], "roles": ["developer"]}, {}, True),
        ({"keys": ["k1"], "roles": ["owner"]}, {}, False),  # every constraint must hold
    ],
)
def test_identity_constraints(
    match: dict[str, Any], identity: dict[str, Any], matches: bool
) -> None:
    policy = snapshot(rule("r1", "deny", **match), posture="allow")

    assert (decided_by(policy, **identity) == "r1") is matches


# --- argument conditions -------------------------------------------------------------------------

ARGS: dict[str, Any] = {
    "path": "/etc/passwd",
    "count": 5,
    "ratio": 0.5,
    "flag": True,
    "nothing": None,
    "name": "bob",
    "options": {"recursive": True, "depth": 2},
    "items": [{"id": "a1"}, {"id": "b2"}],
    "tags": ["x", 1],
    "long": "a" * MAX_REGEX_SUBJECT + "SECRET",
}


@pytest.mark.parametrize(
    ("path", "op", "value", "matches"),
    [
        ("path", "eq", "/etc/passwd", True),
        ("path", "eq", "/etc", False),
        ("count", "eq", 5.0, True),  # JSON numbers: 5 == 5.0
        ("count", "eq", "5", False),  # but not the string "5"
        ("flag", "eq", 1, False),  # and true is not 1
        ("flag", "eq", True, True),
        ("nothing", "eq", None, True),
        ("options", "eq", {"recursive": True, "depth": 2}, True),
        ("tags", "eq", ["x", 1], True),
        ("options.recursive", "eq", True, True),
        ("items.0.id", "eq", "a1", True),
        ("items.1.id", "eq", "b2", True),
        ("items.2.id", "eq", "c3", False),  # index out of range: missing
        ("path.0", "eq", "/", False),  # strings are not indexed
        ("path", "ne", "/tmp", True),
        ("path", "ne", "/etc/passwd", False),
        ("count", "ne", "5", True),  # a different type is a different value
        ("missing", "ne", "x", False),  # every operator but exists is false on a missing path
        ("name", "in", ["alice", "bob"], True),
        ("name", "in", ["alice"], False),
        ("count", "in", [1, 5], True),
        ("count", "in", ["5"], False),
        ("name", "not_in", ["alice"], True),
        ("name", "not_in", ["bob"], False),
        ("missing", "not_in", ["bob"], False),
        ("path", "glob", "/etc/*", True),
        ("path", "glob", "/home/*", False),
        ("count", "glob", "*", False),  # glob on a number: no match
        ("path", "regex", "^/etc/(passwd|shadow)$", True),
        ("path", "regex", "shadow", False),
        ("path", "regex", "pass", True),  # search, not full match
        ("options", "regex", "recursive", False),  # regex on an object: no match
        ("long", "regex", "SECRET", False),  # beyond the examined prefix
        ("long", "glob", "*SECRET", True),  # globs see the whole value
        ("long", "contains", "SECRET", True),
        ("path", "contains", "passwd", True),
        ("path", "contains", "shadow", False),
        ("tags", "contains", 1, True),
        ("tags", "contains", "1", False),
        ("options", "contains", "depth", True),  # an object contains its keys
        ("options", "contains", "breadth", False),
        ("count", "contains", 5, False),
        ("count", "lt", 6, True),
        ("count", "lt", 5, False),
        ("count", "le", 5, True),
        ("count", "gt", 4.5, True),
        ("count", "ge", 5, True),
        ("count", "ge", 6, False),
        ("ratio", "lt", 1, True),
        ("name", "lt", "carol", True),  # strings compare with strings
        ("name", "lt", 10, False),  # type mismatch: no match, no error
        ("count", "lt", "10", False),
        ("flag", "lt", 2, False),  # booleans are not numbers
        ("nothing", "gt", 0, False),
        ("missing", "lt", 10, False),
        ("path", "exists", True, True),
        ("nothing", "exists", True, True),  # present with a null value
        ("missing", "exists", True, False),
        ("missing", "exists", False, True),
        ("path", "exists", False, False),
        ("options.nope.deeper", "exists", False, True),
    ],
)
def test_each_argument_operator(path: str, op: str, value: Any, matches: bool) -> None:
    policy = snapshot(
        rule("r1", "deny", arguments=[{"path": path, "op": op, "value": value}]), posture="allow"
    )

    assert (decided_by(policy, arguments=ARGS) == "r1") is matches


def test_exists_defaults_to_true() -> None:
    policy = snapshot(rule("r1", "deny", arguments=[{"path": "path", "op": "exists"}]))

    assert decided_by(policy, arguments={"path": 1}) == "r1"
    assert decided_by(policy, arguments={}) is None


def test_all_argument_conditions_must_hold() -> None:
    policy = snapshot(
        rule(
            "r1",
            "deny",
            arguments=[
                {"path": "path", "op": "glob", "value": "/etc/*"},
                {"path": "options.recursive", "op": "eq", "value": True},
            ],
        ),
        posture="allow",
    )

    assert decided_by(policy, arguments={"path": "/etc/x", "options": {"recursive": True}}) == "r1"
    assert decided_by(policy, arguments={"path": "/etc/x", "options": {"recursive": False}}) is None
    assert decided_by(policy, arguments={"path": "/tmp/x", "options": {"recursive": True}}) is None


@pytest.mark.parametrize("arguments", [None, {}, {"path": None}, {"path": ["/etc/x"]}])
def test_argument_conditions_never_match_absent_or_mistyped_arguments(arguments: Any) -> None:
    policy = snapshot(
        rule("r1", "deny", arguments=[{"path": "path", "op": "glob", "value": "/etc/*"}]),
        posture="allow",
    )

    assert decided_by(policy, arguments=arguments) is None


# --- time windows --------------------------------------------------------------------------------

OFFICE = {
    "days": ["mon", "tue", "wed", "thu", "fri"],
    "start": "09:00",
    "end": "17:00",
    "tz": "Europe/Paris",
}
SUNDAY_NIGHT = {"days": ["sun"], "start": "23:00", "end": "01:00"}
FRIDAY_NIGHT = {"days": ["fri"], "start": "22:00", "end": "06:00", "tz": "Europe/Paris"}


def paris(*args: int) -> datetime:
    return datetime(*args, tzinfo=PARIS)  # type: ignore[misc]


@pytest.mark.parametrize(
    ("window", "now", "inside"),
    [
        (OFFICE, paris(2026, 3, 4, 9, 0), True),  # Wednesday, start is inclusive
        (OFFICE, paris(2026, 3, 4, 16, 59), True),
        (OFFICE, paris(2026, 3, 4, 17, 0), False),  # end is exclusive
        (OFFICE, paris(2026, 3, 4, 8, 59), False),
        (OFFICE, paris(2026, 3, 7, 11, 0), False),  # Saturday
        # 08:30 UTC is 09:30 in Paris in winter (UTC+1) ...
        (OFFICE, utc(2026, 3, 4, 8, 30), True),
        # ... and 16:30 UTC is 18:30 in Paris in summer (UTC+2).
        (OFFICE, utc(2026, 7, 1, 16, 30), False),
        (OFFICE, utc(2026, 7, 1, 14, 30), True),
        # 23:30 UTC on Sunday is already Monday 00:30 in Paris.
        ({"days": ["mon"], "tz": "Europe/Paris"}, utc(2026, 3, 8, 23, 30), True),
        ({"days": ["mon"], "tz": "UTC"}, utc(2026, 3, 8, 23, 30), False),
        # Overnight: Friday 22:00 to Saturday 06:00.
        (FRIDAY_NIGHT, paris(2026, 3, 6, 22, 0), True),
        (FRIDAY_NIGHT, paris(2026, 3, 6, 23, 59), True),
        (FRIDAY_NIGHT, paris(2026, 3, 7, 0, 0), True),  # after midnight, now Saturday
        (FRIDAY_NIGHT, paris(2026, 3, 7, 5, 59), True),
        (FRIDAY_NIGHT, paris(2026, 3, 7, 6, 0), False),
        (FRIDAY_NIGHT, paris(2026, 3, 6, 21, 59), False),
        (FRIDAY_NIGHT, paris(2026, 3, 6, 3, 0), False),  # Friday early morning: Thursday's night
        (FRIDAY_NIGHT, paris(2026, 3, 7, 23, 0), False),  # Saturday night is not listed
        # Sunday's night wraps into Monday.
        ({**SUNDAY_NIGHT, "tz": "UTC"}, utc(2026, 3, 9, 0, 30), True),
        ({"start": "22:00", "end": "24:00", "tz": "UTC"}, utc(2026, 3, 4, 23, 59), True),
        ({"start": "00:00", "end": "24:00", "tz": "UTC"}, utc(2026, 3, 4, 0, 0), True),
        ({"days": ["wed"], "tz": "Asia/Tokyo"}, utc(2026, 3, 4, 16, 0), False),  # Thu in Tokyo
    ],
)  # fmt: skip
def test_time_windows(window: dict[str, Any], now: datetime, inside: bool) -> None:
    policy = snapshot(rule("r1", "deny", time=window), posture="allow")

    assert (decided_by(policy, now=now) == "r1") is inside


# --- tools/list filtering ------------------------------------------------------------------------

TOOLS = [{"name": n, "description": f"{n} tool"} for n in ("read_file", "delete_x", "write_file")]
ALL = ["read_file", "delete_x", "write_file"]
ETC = arg("path", "glob", "/etc/*")
WEEKEND = {"days": ["sat", "sun"], "tz": "UTC"}


@pytest.mark.parametrize(
    ("documents", "posture", "visible"),
    [
        ([], "allow", ALL),
        ([], "deny", []),
        ([rule("r1", "deny", tools=["delete_*"])], "allow", ["read_file", "write_file"]),
        ([rule("r1", "allow", tools=["read_*"])], "deny", ["read_file"]),
        ([rule("r1", "alert", tools=["write_*"])], "deny", ["write_file"]),
        # Denied only for some arguments: the tool stays listed.
        ([rule("r1", "deny", tools=["write_*"], arguments=[ETC])], "allow", ALL),
        # Allowed only for some arguments: listed, though the posture is deny.
        ([rule("r1", "allow", tools=["read_*"], arguments=[ETC])], "deny", ["read_file"]),
        # An argument-dependent deny, then a blanket deny: every call is denied.
        (
            [
                rule("r1", "deny", tools=["delete_*"], arguments=[arg("force", "eq", True)]),
                rule("r2", "deny", tools=["delete_*"]),
            ],
            "allow",
            ["read_file", "write_file"],
        ),
        # A blanket allow before a deny wins.
        ([rule("r1", "allow", tools=["delete_x"]), rule("r2", "deny")], "allow", ["delete_x"]),
        # Rules for other methods, servers, identities or hours do not apply.
        ([rule("r1", "deny", methods=["resources/read"])], "allow", ALL),
        ([rule("r1", "deny", servers=["dev-*"])], "allow", ALL),
        ([rule("r1", "deny", roles=["owner"])], "allow", ALL),
        ([rule("r1", "deny", roles=["developer"], tools=["write_*"])], "allow", ALL[:2]),
        ([rule("r1", "deny", methods=["tools/call"], time=WEEKEND)], "allow", ALL),
        ([rule("r1", "deny", time={"days": ["wed"], "tz": "UTC"})], "allow", []),
        # A disabled blanket deny hides nothing.
        ([{"id": "r1", "action": "deny", "enabled": False}], "allow", ALL),
    ],
)
def test_tools_list_hides_only_the_tools_every_call_of_which_would_be_denied(
    documents: list[dict[str, Any]], posture: str, visible: list[str]
) -> None:
    policy = snapshot(*documents, posture=posture)

    shown = policy.filter_tools(call(method="tools/list", name=None), TOOLS)

    assert [tool["name"] for tool in shown] == visible


def test_filtering_keeps_the_tool_objects_and_drops_entries_without_a_name() -> None:
    policy = snapshot(posture="allow")
    tools: list[dict[str, Any]] = [
        {"name": "a", "inputSchema": {}},
        {"title": "no name"},
        {"name": 3},
    ]

    shown = policy.filter_tools(call(method="tools/list", name=None), tools)

    assert shown == [tools[0]]
    assert shown[0] is tools[0]


# --- explain -------------------------------------------------------------------------------------


def test_explain_says_why_each_earlier_rule_was_skipped() -> None:
    policy = snapshot(
        rule("r1", "deny", tools=["read_*"]),
        rule("r2", "deny", servers=["dev-*"]),
        {"id": "r3", "action": "deny", "enabled": False},
        rule("r4", "deny", methods=["resources/read"]),
        rule("r5", "deny", keys=["k9"]),
        rule("r6", "deny", key_tags=["prod"]),
        rule("r7", "deny", roles=["owner"]),
        rule("r8", "deny", arguments=[ETC]),
        rule("r9", "deny", arguments=[arg("force", "eq", True)]),
        rule("r10", "deny", time={**OFFICE, "days": ["sat"]}),
        rule("r11", "deny", tools=["list", "delete_*"]),
        rule("r12", "alert", tools=["delete_*"]),
        rule("r13", "deny"),
    )

    explanation = policy.explain(call(name="delete_x", arguments={"path": "/tmp/x"}))

    assert explanation.decision == policy.decide(
        call(name="delete_x", arguments={"path": "/tmp/x"})
    )
    assert explanation.decision.rule_id == "r11"
    assert [(s.rule_index, s.rule_id, s.reason) for s in explanation.skipped] == [
        (0, "r1", "tool 'delete_x' does not match 'read_*'"),
        (1, "r2", "server 'prod-db' does not match 'dev-*'"),
        (2, "r3", "rule disabled"),
        (3, "r4", "method 'tools/call' is not one of ['resources/read']"),
        (4, "r5", "API key 'k1' is not one of ['k9']"),
        (5, "r6", "key tags ['ci'] include none of ['prod']"),
        (6, "r7", "role 'developer' is not one of ['owner']"),
        (7, "r8", "argument path 'path' glob '/etc/*' false"),
        (8, "r9", "argument path 'force' is missing"),
        (9, "r10", "time wed 11:30 (Europe/Paris) is outside sat 09:00-17:00"),
    ]


def test_explain_lists_every_rule_when_the_posture_decides() -> None:
    policy = snapshot(rule("r1", "deny", tools=["a", "b"]), rule("r2", "deny", keys=["k1"]))

    explanation = policy.explain(call(name="c", key_id=None, method="prompts/get"))

    assert explanation.decision.reason == "default posture deny"
    assert [s.reason for s in explanation.skipped] == [
        "prompt 'c' matches none of ['a', 'b']",
        "the call has no API key",
    ]


def test_explain_reports_a_call_without_a_name() -> None:
    policy = snapshot(rule("r1", "deny", tools=["read_*"]))

    (skip,) = policy.explain(call(method="tools/list", name=None)).skipped

    assert skip.reason == "the call has no name to match ['read_*']"


# --- validation ----------------------------------------------------------------------------------


def condition(**fields: Any) -> dict[str, Any]:
    return rule(arguments=[fields])


VALUE = "match.arguments[0].value"


@pytest.mark.parametrize(
    ("document", "field", "message"),
    [
        ("deny", "rule", "must be an object"),
        ({"action": "deny"}, "id", "is required"),
        ({"id": "has space", "action": "deny"}, "id", "must be 1-64 characters"),
        ({"id": "r1"}, "action", "is required"),
        ({"id": "r1", "action": "block"}, "action", "must be one of ['allow', 'deny', 'alert']"),
        ({"id": "r1", "action": "deny", "colour": "red"}, "colour", "unknown field"),
        ({"id": "r1", "action": "deny", "enabled": "yes"}, "enabled", "must be true or false"),
        ({"id": "r1", "action": "allow", "message": "hi"}, "message", "only deny and alert"),
        ({"id": "r1", "action": "deny", "message": ""}, "message", "non-empty string"),
        ({"id": "r1", "action": "deny", "match": []}, "match", "must be an object"),
        (rule(tool=["x"]), "match.tool", "unknown field"),
        (rule(tools="read_*"), "match.tools", "must be a non-empty list of strings"),
        (rule(tools=[]), "match.tools", "must be a non-empty list of strings"),
        (rule(tools=["ok", 3]), "match.tools[1]", "must be a non-empty string"),
        (rule(servers=["Prod-*"]), "match.servers[0]", "can never match a server slug"),
        (rule(methods=["tool/call"]), "match.methods[0]", "unknown MCP method 'tool/call'"),
        (rule(roles=[None]), "match.roles[0]", "must be a non-empty string"),
        (rule(arguments={"path": "p"}), "match.arguments", "non-empty list of conditions"),
        (condition(path="p", op="like", value=1), "match.arguments[0].op", "must be one of"),
        (condition(path="p", op="eq"), VALUE, "is required"),
        (condition(op="eq", value=1), "match.arguments[0].path", "is required"),
        (condition(path="a..b", op="eq", value=1), "match.arguments[0].path", "empty segment"),
        (condition(path="p", op="eq", value=1, x=1), "match.arguments[0].x", "unknown field"),
        (condition(path="p", op="in", value="a"), VALUE, "non-empty list"),
        (condition(path="p", op="lt", value=True), VALUE, "number or a string"),
        (condition(path="p", op="lt", value=[1]), VALUE, "number or a string"),
        (condition(path="p", op="eq", value=float("nan")), VALUE, "finite"),
        (condition(path="p", op="exists", value="yes"), VALUE, "true or false"),
        (condition(path="p", op="glob", value=5), VALUE, "non-empty string"),
        (condition(path="p", op="regex", value="("), VALUE, "invalid regex"),
        (condition(path="p", op="regex", value="(a+)+$"), VALUE, "nested quantifiers"),
        (condition(path="p", op="regex", value="x" * 300), VALUE, "at most 256 characters"),
        (rule(time={"start": "09:00", "end": "17:00"}), "match.time.tz", "is required"),
        (rule(time={"tz": "Mars/Olympus", "days": ["mon"]}), "match.time.tz", "unknown IANA"),
        (rule(time={"tz": "UTC", "days": ["monday"]}), "match.time.days", "days are"),
        (rule(time={"tz": "UTC", "start": "9:00", "end": "17:00"}), "match.time.start", "HH:MM"),
        (rule(time={"tz": "UTC", "start": "09:00", "end": "24:01"}), "match.time.end", "HH:MM"),
        (rule(time={"tz": "UTC", "start": "24:00", "end": "05:00"}), "match.time.start", "HH:MM"),
        (rule(time={"tz": "UTC", "start": "09:00"}), "match.time.end", "go together"),
        (rule(time={"tz": "UTC"}), "match.time.days", "needs days, or start and end"),
        (rule(time={"tz": "UTC", "start": "09:00", "end": "09:00"}), "match.time.end", "differ"),
        (rule(time={"tz": "UTC", "days": ["mon"], "when": 1}), "match.time.when", "unknown field"),
        (limited(limit=0, window_s=60, per="key"), "rate_limit.limit", "from 1 to"),
        (limited(limit=5, window_s="60", per="key"), "rate_limit.window_s", "integer"),
        (limited(limit=5, window_s=60, per="user"), "rate_limit.per", "must be one of"),
        (limited(limit=5, window_s=60), "rate_limit.per", "is required"),
        (
            {
                "id": "r1",
                "action": "deny",
                "rate_limit": {"limit": 5, "window_s": 60, "per": "org"},
            },
            "rate_limit",
            "nothing to rate-limit",
        ),
    ],
)
def test_an_invalid_rule_is_refused_with_the_field_and_the_reason(
    document: Any, field: str, message: str
) -> None:
    with pytest.raises(PolicyValidationError) as caught:
        validate_rules([{"id": "ok", "action": "allow"}, document])

    errors = caught.value.errors
    assert [(e["index"], e["field"]) for e in errors] == [(1, field)], errors
    assert message in errors[0]["message"]


def test_validation_reports_every_problem_of_every_rule() -> None:
    documents = [
        {"id": "r1", "action": "nope", "match": {"tools": [], "bogus": 1}},
        {"id": "r2", "action": "deny"},
        {"id": "r1", "action": "deny"},
    ]

    with pytest.raises(PolicyValidationError) as caught:
        validate_rules(documents)

    assert [(e["index"], e["field"]) for e in caught.value.errors] == [
        (0, "action"),
        (0, "match.bogus"),
        (0, "match.tools"),
        (2, "id"),
    ]
    assert "duplicate id 'r1': rule 0 has it" in caught.value.errors[3]["message"]
    assert str(caught.value).startswith("rule 0: action: must be one of")


@pytest.mark.parametrize(
    ("documents", "message"),
    [({"id": "r1"}, "must be a list"), (None, "must be a list"), ([{}] * 10_001, "at most 10000")],
)
def test_the_rule_list_itself_must_be_a_bounded_list(documents: Any, message: str) -> None:
    with pytest.raises(PolicyValidationError) as caught:
        validate_rules(documents)

    assert caught.value.errors == [
        {"index": None, "field": "rules", "message": caught.value.errors[0]["message"]}
    ]
    assert message in caught.value.errors[0]["message"]


def test_a_valid_document_becomes_frozen_rules() -> None:
    (parsed,) = validate_rules(
        [
            {
                "id": "r1",
                "action": "deny",
                "message": "no",
                "description": "why",
                "match": {
                    "servers": ["prod-*"],
                    "methods": ["tools/call"],
                    "tools": ["delete_*"],
                    "keys": ["k1"],
                    "key_tags": ["ci"],
                    "roles": ["developer"],
                    "arguments": [{"path": "items.0.id", "op": "in", "value": ["a", "b"]}],
                    "time": {
                        "days": ["fri"],
                        "start": "22:00",
                        "end": "06:00",
                        "tz": "Europe/Paris",
                    },
                },
            }
        ]
    )

    assert parsed.match.tools == ("delete_*",)
    assert parsed.match.arguments[0].segments == ("items", "0", "id")
    assert parsed.match.arguments[0].value == ("a", "b")
    assert parsed.match.time is not None
    assert (parsed.match.time.days, parsed.match.time.start, parsed.match.time.end) == (
        frozenset({4}),
        22 * 60,
        6 * 60,
    )
    with pytest.raises(AttributeError):
        parsed.id = "r2"  # type: ignore[misc]


# --- the regex guard -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pattern",
    [
        r"(a+)+$",
        r"(a*)*",
        r"(a|aa)+",
        r"(x|x?)*",
        r"(\w+\s?)+$",
        r"(.*,)+x",
        r"(?:\w+){3}",
        r"(a?){25}a{25}",
        r".*a.*b",
        r".*secret.*",
        r"\d+\d+",
        r"\d+\.?\d*",
        r"[a-z]+[A-Z]*[a-z]+",
        r"(?i)[A-Z]+[a-z]+",
        r"a{0,30}a{0,30}a{0,30}",
        r"(?:a|aa)(?:a|aa)b",
        r"(a)\1",
        r"(?P<x>a)(?P=x)",
    ],
)
def test_the_regex_guard_refuses_patterns_that_can_backtrack_catastrophically(pattern: str) -> None:
    with pytest.raises(UnsafeRegex):
        check_regex(pattern)


@pytest.mark.parametrize(
    "pattern",
    [
        r"^/etc/",
        r"\.pem$",
        r"(?i)drop\s+table",
        r"^/home/[^/]+/\.ssh/",
        r"^\w+(\.\w+)*$",
        r"(foo|bar)+",
        r"(?:\d{1,3}\.){3}\d{1,3}",
        r"[;&|`]|\$\(",
        r"https?://",
        r"AKIA[0-9A-Z]{16}",
        r"(?i)\b(password|secret|token)\b",
        r"\d+(\.\d+)?",
        r"\w+@\w+\.\w+",
    ],
)
def test_the_regex_guard_accepts_everyday_patterns(pattern: str) -> None:
    assert check_regex(pattern).pattern == pattern


@pytest.mark.parametrize("pattern", [r"(?=.*a)(?=.*b)", r"(?<=/)etc", r"foo(?!bar)"])
def test_lookarounds_are_refused_because_they_cannot_match_in_linear_time(pattern: str) -> None:
    with pytest.raises(UnsafeRegex, match="linear-time matcher"):
        check_regex(pattern)


def test_argument_regexes_are_evaluated_by_the_linear_time_engine() -> None:
    from governance.policy.conditions import ArgCheck
    from governance.policy.regex_guard import compile_linear
    from governance.policy.rules import validate_rules

    # (ab|a)*c took about 355 ms on a 4 KiB subject with CPython's engine; RE2 is linear.
    compiled = compile_linear(r"(ab|a)*c")
    assert type(compiled).__module__.split(".")[0] == "re2"
    assert compiled.search("ab" * 2048, 0, 4096) is None
    assert compiled.search("abac", 0, 4096) is not None
    rule = validate_rules(
        [
            {
                "id": "r",
                "action": "deny",
                "match": {"arguments": [{"path": "q", "op": "regex", "value": "(ab|a)*c"}]},
            }
        ]
    )[0]
    check = ArgCheck(rule.match.arguments[0])
    assert type(check.regex).__module__.split(".")[0] == "re2"
