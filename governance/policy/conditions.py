"""Compiled checks: one object per constraint of a rule, each able to say why it failed.

Every check has `test(call) -> bool` (the hot path: no allocation beyond what the comparison
needs, never raises on JSON-shaped input) and `why_not(call) -> str` (for `explain`).
"""

from __future__ import annotations

import fnmatch
import json
import re
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo

from governance.policy.context import CallContext
from governance.policy.regex_guard import MAX_REGEX_SUBJECT, compile_linear
from governance.policy.rules import DAYS, ArgCondition, TimeWindow

_MISSING: Any = object()
# How explain() names the call's name: (with a value, without one).
_NAME_KIND = {
    "tools/call": ("tool", "tool name"),
    "resources/read": ("resource", "resource uri"),
    "prompts/get": ("prompt", "prompt name"),
}


def is_glob(pattern: str) -> bool:
    return "*" in pattern or "?" in pattern


def glob_regex(patterns: tuple[str, ...]) -> re.Pattern[str]:
    """One regex matching any of the globs; `*` and `?` are the only wildcards.

    `fnmatch.translate` (Python 3.11) wraps each star in an atomic group, so matching stays
    linear-ish however many stars a glob has; `[` is escaped so it stays a literal.
    """
    parts = (fnmatch.translate(p.replace("[", "[[]")) for p in patterns)
    return re.compile("|".join(f"(?:{part})" for part in parts))


class GlobSet:
    """Matches a value against several globs, most without a regex.

    Globs of the common shapes answer with C-level string methods: exact names from a set,
    "read_*" with startswith, "*_file" with endswith, "*admin*" with `in`; only the others
    (a "?" or an inner "*") are compiled, together, into one regex.
    """

    __slots__ = ("any", "exact", "infixes", "patterns", "prefixes", "regex", "suffixes")

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.patterns = patterns
        exact: set[str] = set()
        prefixes: list[str] = []
        suffixes: list[str] = []
        infixes: list[str] = []
        general: list[str] = []
        self.any = False
        for pattern in patterns:
            body = pattern.strip("*")
            if not is_glob(pattern):
                exact.add(pattern)
            elif "?" in pattern or "*" in body:
                general.append(pattern)
            elif not body:
                self.any = True
            elif pattern[0] == "*" and pattern[-1] == "*":
                infixes.append(body)
            elif pattern[-1] == "*":
                prefixes.append(body)
            else:
                suffixes.append(body)
        self.exact = frozenset(exact)
        self.prefixes = tuple(prefixes)
        self.suffixes = tuple(suffixes)
        self.infixes = tuple(infixes)
        self.regex = glob_regex(tuple(general)) if general else None

    def matches(self, value: str) -> bool:
        return (
            value in self.exact
            or self.any
            or (bool(self.prefixes) and value.startswith(self.prefixes))
            or (bool(self.suffixes) and value.endswith(self.suffixes))
            or any(infix in value for infix in self.infixes)
            or (self.regex is not None and self.regex.match(value) is not None)
        )

    def describe(self) -> str:
        if len(self.patterns) == 1:
            return f"does not match {self.patterns[0]!r}"
        return f"matches none of {list(self.patterns)}"


class MethodCheck:
    __slots__ = ("methods",)

    def __init__(self, methods: tuple[str, ...]) -> None:
        self.methods = frozenset(methods)

    def test(self, call: CallContext) -> bool:
        return call.method in self.methods

    def why_not(self, call: CallContext) -> str:
        return f"method {call.method!r} is not one of {sorted(self.methods)}"


class NameCheck:
    __slots__ = ("globs",)

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.globs = GlobSet(patterns)

    def test(self, call: CallContext) -> bool:
        return call.name is not None and self.globs.matches(call.name)

    def why_not(self, call: CallContext) -> str:
        kind, missing = _NAME_KIND.get(call.method, ("name", "name"))
        if call.name is None:
            return f"the call has no {missing} to match {list(self.globs.patterns)}"
        return f"{kind} {call.name!r} {self.globs.describe()}"


class ServerCheck:
    __slots__ = ("globs",)

    def __init__(self, patterns: tuple[str, ...]) -> None:
        self.globs = GlobSet(patterns)

    def test(self, call: CallContext) -> bool:
        return self.globs.matches(call.server_slug)

    def why_not(self, call: CallContext) -> str:
        return f"server {call.server_slug!r} {self.globs.describe()}"


class KeyCheck:
    __slots__ = ("keys",)

    def __init__(self, keys: tuple[str, ...]) -> None:
        self.keys = frozenset(keys)

    def test(self, call: CallContext) -> bool:
        return call.key_id in self.keys

    def why_not(self, call: CallContext) -> str:
        if call.key_id is None:
            return "the call has no API key"
        return f"API key {call.key_id!r} is not one of {sorted(self.keys)}"


class TagCheck:
    __slots__ = ("tags",)

    def __init__(self, tags: tuple[str, ...]) -> None:
        self.tags = frozenset(tags)

    def test(self, call: CallContext) -> bool:
        return not self.tags.isdisjoint(call.key_tags)

    def why_not(self, call: CallContext) -> str:
        return f"key tags {sorted(call.key_tags)} include none of {sorted(self.tags)}"


class RoleCheck:
    __slots__ = ("roles",)

    def __init__(self, roles: tuple[str, ...]) -> None:
        self.roles = frozenset(roles)

    def test(self, call: CallContext) -> bool:
        return call.role in self.roles

    def why_not(self, call: CallContext) -> str:
        if call.role is None:
            return "the call has no member role"
        return f"role {call.role!r} is not one of {sorted(self.roles)}"


class TimeCheck:
    __slots__ = ("window", "zone")

    def __init__(self, window: TimeWindow) -> None:
        self.window = window
        self.zone = ZoneInfo(window.tz)

    def test(self, call: CallContext) -> bool:
        local = call.now.astimezone(self.zone)
        minute = local.hour * 60 + local.minute
        day = local.weekday()
        w = self.window
        if w.start < w.end:
            return day in w.days and w.start <= minute < w.end
        # Overnight: the part after midnight belongs to the window that started the day before.
        return (day in w.days and minute >= w.start) or ((day - 1) % 7 in w.days and minute < w.end)

    def why_not(self, call: CallContext) -> str:
        local = call.now.astimezone(self.zone)
        w = self.window
        days = ",".join(DAYS[d] for d in sorted(w.days))
        span = f"{_clock(w.start)}-{_clock(w.end)}"
        return f"time {DAYS[local.weekday()]} {local:%H:%M} ({w.tz}) is outside {days} {span}"


class ArgCheck:
    """One argument condition; see the operator table in `governance.policy.rules`."""

    __slots__ = ("condition", "glob", "regex", "steps", "strings", "test_value")

    def __init__(self, condition: ArgCondition) -> None:
        self.condition = condition
        # A digit segment indexes a list, or is a key of an object.
        self.steps = tuple(
            (seg, int(seg) if seg.isascii() and seg.isdigit() else None)
            for seg in condition.segments
        )
        op, value = condition.op, condition.value
        self.glob = GlobSet((value,)) if op == "glob" else None
        self.regex = compile_linear(value) if op == "regex" else None
        # `in` over strings only: a set lookup instead of a loop.
        self.strings = (
            frozenset(value)
            if op in ("in", "not_in") and all(type(v) is str for v in value)
            else None
        )
        self.test_value = getattr(self, f"_op_{op}")

    def resolve(self, arguments: Any) -> Any:
        current = arguments
        for key, index in self.steps:
            if isinstance(current, Mapping):
                current = current.get(key, _MISSING)
            elif index is not None and isinstance(current, (list, tuple)):
                current = current[index] if index < len(current) else _MISSING
            else:
                return _MISSING
            if current is _MISSING:
                return _MISSING
        return current

    def test(self, call: CallContext) -> bool:
        value = self.resolve(call.arguments)
        if value is _MISSING:
            return self.condition.op == "exists" and self.condition.value is False
        return bool(self.test_value(value))

    def why_not(self, call: CallContext) -> str:
        c = self.condition
        missing = self.resolve(call.arguments) is _MISSING
        if c.op == "exists":
            return f"argument path {c.path!r} is {'missing' if missing else 'present'}"
        if missing:
            return f"argument path {c.path!r} is missing"
        return f"argument path {c.path!r} {c.op} {_show(c.value)} false"

    def _op_eq(self, value: Any) -> bool:
        return json_equal(value, self.condition.value)

    def _op_ne(self, value: Any) -> bool:
        return not json_equal(value, self.condition.value)

    def _op_in(self, value: Any) -> bool:
        if self.strings is not None:
            return type(value) is str and value in self.strings
        return any(json_equal(value, item) for item in self.condition.value)

    def _op_not_in(self, value: Any) -> bool:
        return not self._op_in(value)

    def _op_glob(self, value: Any) -> bool:
        assert self.glob is not None
        return isinstance(value, str) and self.glob.matches(value)

    def _op_regex(self, value: Any) -> bool:
        assert self.regex is not None
        # endpos caps the work on agent-controlled input (quadratic at worst, see regex_guard).
        return isinstance(value, str) and self.regex.search(value, 0, MAX_REGEX_SUBJECT) is not None

    def _op_contains(self, value: Any) -> bool:
        wanted = self.condition.value
        if isinstance(value, str):
            return isinstance(wanted, str) and wanted in value
        if isinstance(value, (list, tuple)):
            return any(json_equal(item, wanted) for item in value)
        if isinstance(value, Mapping):
            return isinstance(wanted, str) and wanted in value
        return False

    def _op_lt(self, value: Any) -> bool:
        return _comparable(value, self.condition.value) and value < self.condition.value

    def _op_le(self, value: Any) -> bool:
        return _comparable(value, self.condition.value) and value <= self.condition.value

    def _op_gt(self, value: Any) -> bool:
        return _comparable(value, self.condition.value) and value > self.condition.value

    def _op_ge(self, value: Any) -> bool:
        return _comparable(value, self.condition.value) and value >= self.condition.value

    def _op_exists(self, value: Any) -> bool:
        return self.condition.value is True


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values: 1 == 1.0, but true != 1 and "1" != 1."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)):
        return isinstance(b, (int, float)) and a == b
    if isinstance(a, str):
        return isinstance(b, str) and a == b
    if isinstance(a, (list, tuple)):
        return (
            isinstance(b, (list, tuple))
            and len(a) == len(b)
            and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
        )
    if isinstance(a, Mapping):
        return (
            isinstance(b, Mapping)
            and len(a) == len(b)
            and all(k in b and json_equal(v, b[k]) for k, v in a.items())
        )
    return False


def _comparable(value: Any, bound: Any) -> bool:
    if isinstance(bound, str):
        return isinstance(value, str)
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _clock(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def _show(value: Any) -> str:
    shown = repr(value) if isinstance(value, str) else json.dumps(value, default=str)
    return shown if len(shown) <= 60 else shown[:57] + "..."
