"""Policy rules: the JSON document stored in the database, its validation, and the frozen
dataclasses the engine compiles.

A policy is an ordered list of rule documents; the first enabled rule that matches a call
decides it, and the organisation's default posture ("allow" or "deny") decides when none does.

Rule document (every key not marked required is optional; unknown keys are refused)::

    {
      "id": "r1",                        # required; 1-64 of [A-Za-z0-9_.:-], unique in the list
      "action": "deny",                  # required; "allow" | "deny" | "alert" (allow + alert)
      "message": "No deletes on prod",   # deny/alert only: shown to the agent / in the alert
      "description": "why this exists",  # for people; never shown to agents
      "enabled": true,                   # default true; disabled rules are skipped
      "match": {                         # absent or {} = every call; all present keys must hold
        "servers": ["prod-*"],           # server slug globs
        "methods": ["tools/call"],       # MCP methods (KNOWN_METHODS)
        "tools": ["delete_*"],           # globs on the call's name: the tool name for
                                         # tools/call, the uri for resources/read, the prompt
                                         # name for prompts/get; a call without one never matches
        "keys": ["<api key id>"],        # the calling API key is one of these
        "key_tags": ["ci"],              # the calling key has at least one of these tags
        "roles": ["developer"],          # the calling member's role is one of these
        "arguments": [                   # all must hold, on params.arguments
          {"path": "options.recursive", "op": "eq", "value": true}
        ],
        "time": {"days": ["mon", "tue"], "start": "09:00", "end": "17:00",
                 "tz": "Europe/Paris"}
      },
      "rate_limit": {"limit": 10, "window_s": 60, "per": "key"}   # allow/alert only
    }

Globs know `*` (any run of characters, `/` included) and `?` (one character); every other
character, `[` included, is literal. Matching is case-sensitive.

Argument conditions. `path` is a dotted path into `params.arguments`: `"path"`,
`"options.recursive"`, `"items.0.id"` (a digit segment indexes a list, or is a key of an
object). Operators:

- `eq`, `ne`: JSON equality (1 equals 1.0; true does not equal 1; "1" does not equal 1);
- `in`, `not_in`: `value` is a list; the argument equals one / none of its items;
- `glob`: the argument is a string matching the glob `value`;
- `regex`: the argument is a string in which the regex `value` is found (search, so anchor
  with `^`/`$`); only its first 4,096 characters are examined, and patterns that could
  backtrack catastrophically are refused (see `regex_guard`);
- `contains`: a string argument contains the string `value`, or a list argument has an item
  equal to `value`, or an object argument has the key `value`;
- `lt`, `le`, `gt`, `ge`: number against number or string against string; any other pairing
  is false;
- `exists`: `value` (default true) says whether the path must be present.

Every operator but `exists` is false when the path is missing, and a type mismatch is false:
evaluation never raises.

Time windows. `days` are those on which the window starts (default: every day); `start` and
`end` are "HH:MM" in `tz` (an IANA zone), start inclusive, end exclusive, `end` may be "24:00".
If `end` is earlier than `start` the window runs overnight: `{"days": ["fri"], "start":
"22:00", "end": "06:00"}` covers Friday 22:00 to Saturday 06:00. Without start/end the window
is the whole of each listed day.

Validation. `validate_rules(documents)` returns the `Rule`s, or raises `PolicyValidationError`
whose `errors` list every problem found, each as `{"index": 3, "field":
"match.arguments[0].op", "message": "must be one of [...], not 'like'"}` (index None when the
list itself is wrong), ready for a 400 body or a form error.
"""

from __future__ import annotations

from dataclasses import dataclass
from dataclasses import fields as dataclass_fields
from typing import Any, Literal, TypedDict, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from governance.policy import fields
from governance.policy.fields import FieldError, FieldErrors, Fields
from governance.policy.regex_guard import UnsafeRegex, check_regex

Action = Literal["allow", "deny", "alert"]
Posture = Literal["allow", "deny"]
Per = Literal["key", "session", "org"]
Op = Literal[
    "eq", "ne", "in", "not_in", "glob", "regex", "contains", "lt", "le", "gt", "ge", "exists"
]

ACTIONS: tuple[Action, ...] = ("allow", "deny", "alert")
POSTURES: tuple[Posture, ...] = ("allow", "deny")
OPS: tuple[Op, ...] = (
    "eq", "ne", "in", "not_in", "glob", "regex", "contains", "lt", "le", "gt", "ge", "exists"
)  # fmt: skip
PERS: tuple[Per, ...] = ("key", "session", "org")
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # index = datetime.weekday()
# Client-to-server request methods of the MCP revisions the proxy speaks (2024-11-05 to
# 2026-07-28, tasks from 2025-11-25). A name outside this set is a typo that would never match.
KNOWN_METHODS = frozenset(
    {
        "initialize", "ping", "server/discover", "tools/list", "tools/call",
        "resources/list", "resources/read", "resources/templates/list",
        "resources/subscribe", "resources/unsubscribe", "subscriptions/listen",
        "prompts/list", "prompts/get", "completion/complete", "logging/setLevel",
        "tasks/get", "tasks/result", "tasks/list", "tasks/cancel", "tasks/update",
    }
)  # fmt: skip
MAX_RULES = 10_000
MAX_CONDITIONS = 32
MAX_PATH_SEGMENTS = 16


@dataclass(frozen=True, slots=True)
class ArgCondition:
    path: str
    op: Op
    value: Any  # JSON; lists are stored as tuples
    segments: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TimeWindow:
    tz: str
    days: frozenset[int]  # 0 = Monday, as datetime.weekday()
    start: int  # minutes after midnight, inclusive
    end: int  # minutes after midnight, exclusive; 1440 = "24:00"; end <= start: overnight


@dataclass(frozen=True, slots=True)
class RateLimit:
    limit: int
    window_s: int
    per: Per


@dataclass(frozen=True, slots=True)
class Match:
    """What a rule matches on; None means "any"."""

    servers: tuple[str, ...] | None = None
    methods: tuple[str, ...] | None = None
    tools: tuple[str, ...] | None = None
    keys: tuple[str, ...] | None = None
    key_tags: tuple[str, ...] | None = None
    roles: tuple[str, ...] | None = None
    arguments: tuple[ArgCondition, ...] = ()
    time: TimeWindow | None = None


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    action: Action
    match: Match = Match()
    message: str | None = None
    description: str | None = None
    enabled: bool = True
    rate_limit: RateLimit | None = None


class RuleError(TypedDict):
    index: int | None  # position of the rule in the list; None for the list itself
    field: str  # location inside the rule, e.g. "match.arguments[0].op"
    message: str


class PolicyValidationError(ValueError):
    """The rule documents are invalid; `errors` lists every problem found."""

    def __init__(self, errors: list[RuleError]) -> None:
        self.errors = errors
        first = errors[0]
        where = "rules" if first["index"] is None else f"rule {first['index']}"
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        super().__init__(f"{where}: {first['field']}: {first['message']}{more}")


def validate_rules(documents: Any) -> list[Rule]:
    """Parse the stored JSON rule list into `Rule`s, or raise `PolicyValidationError`."""
    if not isinstance(documents, list):
        raise PolicyValidationError([_list_error("must be a list of rule objects")])
    if len(documents) > MAX_RULES:
        raise PolicyValidationError([_list_error(f"must have at most {MAX_RULES} rules")])
    rules: list[Rule] = []
    errors: list[RuleError] = []
    first_index: dict[str, int] = {}
    for index, document in enumerate(documents):
        rule_id = document.get("id") if isinstance(document, dict) else None
        if isinstance(rule_id, str) and rule_id in first_index:
            message = f"duplicate id {rule_id!r}: rule {first_index[rule_id]} has it"
            errors.append({"index": index, "field": "id", "message": message})
        elif isinstance(rule_id, str):
            first_index[rule_id] = index
        try:
            rules.append(_rule(document))
        except FieldError as exc:
            errors.append({"index": index, "field": exc.field, "message": exc.message})
        except FieldErrors as exc:
            errors.extend(
                {"index": index, "field": e.field, "message": e.message} for e in exc.errors
            )
    if errors:
        raise PolicyValidationError(errors)
    return rules


def validate_posture(value: Any) -> Posture:
    if value not in POSTURES:
        raise ValueError(f"posture must be 'allow' or 'deny', not {value!r}")
    return cast(Posture, value)


def _names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclass_fields(cls))


def _list_error(message: str) -> RuleError:
    return {"index": None, "field": "rules", "message": message}


def _rule(document: Any) -> Rule:
    doc = Fields(document, "", _names(Rule))
    rule = Rule(
        id=doc.get("id", fields.rule_id, required=True, default=""),
        action=doc.get("action", fields.choice, ACTIONS, required=True),
        message=doc.get("message", fields.text),
        description=doc.get("description", fields.text),
        enabled=doc.get("enabled", fields.boolean, default=True),
        match=doc.get("match", _match, default=Match()),
        rate_limit=doc.get("rate_limit", _rate_limit),
    )
    if rule.message is not None and rule.action == "allow":
        doc.add("message", "only deny and alert rules carry a message")
    if rule.rate_limit is not None and rule.action == "deny":
        doc.add("rate_limit", "a deny rule has nothing to rate-limit")
    doc.check()
    return rule


def _match(value: Any, where: str) -> Match:
    doc = Fields(value, where, _names(Match))
    match = Match(
        servers=doc.get("servers", fields.server_globs),
        methods=doc.get("methods", fields.methods, KNOWN_METHODS),
        tools=doc.get("tools", fields.string_list),
        keys=doc.get("keys", fields.string_list),
        key_tags=doc.get("key_tags", fields.string_list),
        roles=doc.get("roles", fields.string_list),
        arguments=doc.get("arguments", _conditions, default=()),
        time=doc.get("time", _time_window),
    )
    doc.check()
    return match


def _conditions(value: Any, where: str) -> tuple[ArgCondition, ...]:
    if not isinstance(value, list) or not value:
        raise FieldError(where, "must be a non-empty list of conditions")
    if len(value) > MAX_CONDITIONS:
        raise FieldError(where, f"must have at most {MAX_CONDITIONS} conditions")
    conditions: list[ArgCondition] = []
    errors: list[FieldError] = []
    for i, item in enumerate(value):
        try:
            conditions.append(_condition(item, f"{where}[{i}]"))
        except FieldError as exc:
            errors.append(exc)
        except FieldErrors as exc:
            errors.extend(exc.errors)
    if errors:
        raise FieldErrors(errors)
    return tuple(conditions)


def _condition(value: Any, where: str) -> ArgCondition:
    doc = Fields(value, where, ("path", "op", "value"))
    path = doc.get("path", _path, required=True)
    op = doc.get("op", fields.choice, OPS, required=True)
    operand: Any = None
    if op == "exists":
        operand = doc.get("value", fields.boolean, default=True)
    elif op is not None:
        operand = doc.get("value", _operand, op, required=True)
    doc.check()
    return ArgCondition(path=path[0], op=op, value=operand, segments=path[1])


def _path(value: Any, where: str) -> tuple[str, tuple[str, ...]]:
    path = fields.text(value, where, fields.MAX_PATTERN)
    segments = tuple(path.split("."))
    if any(not segment for segment in segments):
        raise FieldError(where, f"{path!r} has an empty segment; write e.g. 'options.recursive'")
    if len(segments) > MAX_PATH_SEGMENTS:
        raise FieldError(where, f"must have at most {MAX_PATH_SEGMENTS} segments")
    return path, segments


def _operand(value: Any, where: str, op: Op) -> Any:
    if op in ("in", "not_in"):
        if not isinstance(value, list) or not value:
            raise FieldError(where, f"{op} needs a non-empty list")
        return fields.json_value(value, where)
    if op in ("glob", "regex"):
        pattern = fields.text(value, where, fields.MAX_PATTERN)
        if op == "regex":
            try:
                check_regex(pattern)
            except UnsafeRegex as exc:
                raise FieldError(where, str(exc)) from exc
        return pattern
    if op in ("lt", "le", "gt", "ge"):
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise FieldError(where, f"{op} needs a number or a string, not {value!r}")
        return fields.json_value(value, where)
    return fields.json_value(value, where)


def _time_window(value: Any, where: str) -> TimeWindow:
    doc = Fields(value, where, ("days", "start", "end", "tz"))
    tz = doc.get("tz", _zone, required=True)
    days = doc.get("days", fields.string_list, default=DAYS)
    start = doc.get("start", fields.clock)
    end = doc.get("end", fields.clock, True)
    if isinstance(days, tuple) and any(day not in DAYS for day in days):
        doc.add("days", f"days are {list(DAYS)}")
    if ("start" in value) != ("end" in value):
        doc.add("start" if "end" in value else "end", "start and end go together")
    elif "start" not in value and "days" not in value:
        doc.add("days", "a time window needs days, or start and end")
    if start is not None and start == end:
        doc.add("end", "must differ from start (omit both for the whole day)")
    doc.check()
    return TimeWindow(
        tz=tz,
        days=frozenset(DAYS.index(day) for day in days),
        start=0 if start is None else start,
        end=24 * 60 if end is None else end,
    )


def _zone(value: Any, where: str) -> str:
    name = fields.text(value, where, 64)
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise FieldError(where, f"unknown IANA time zone {name!r}") from exc
    return name


def _rate_limit(value: Any, where: str) -> RateLimit:
    doc = Fields(value, where, _names(RateLimit))
    rate_limit = RateLimit(
        limit=doc.get("limit", fields.integer, 1, 1_000_000, required=True),
        window_s=doc.get("window_s", fields.integer, 1, 31 * 86_400, required=True),
        per=doc.get("per", fields.choice, PERS, required=True),
    )
    doc.check()
    return rate_limit
