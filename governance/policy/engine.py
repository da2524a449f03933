"""The policy engine: compile validated rules once, then decide calls in microseconds.

Pure Python over frozen dataclasses (no Django, no Redis, no I/O; import-linter enforces it).

Semantics: rules are tried in order and the first enabled rule whose every constraint holds
decides; when none does, the organisation's posture does. To stay fast with thousands of rules
without changing that order, the compiled policy indexes its rules as bitmasks (bit i = rule i,
see `index`): by method, API key, role and key tag, and by server and name glob (exact, literal
prefix, suffix or infix). A call ANDs one mask per index, which leaves few candidates; they are
tried lowest bit first and each is checked in full, so the index only ever drops rules that
could not have matched.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from governance.policy.conditions import (
    ArgCheck,
    KeyCheck,
    MethodCheck,
    NameCheck,
    RoleCheck,
    ServerCheck,
    TagCheck,
    TimeCheck,
)
from governance.policy.context import CallContext
from governance.policy.index import GlobIndex, ValueIndex, bits
from governance.policy.rules import Action, Posture, RateLimit, Rule, validate_posture


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    rule_id: str | None
    rule_index: int | None  # position in the rule list, disabled rules included
    version: int | None
    message: str | None  # for deny (shown to the agent) and alert
    reason: str  # "matched rule r3" / "default posture deny"
    rate_limit: RateLimit | None = None

    @property
    def allowed(self) -> bool:
        return self.action != "deny"


@dataclass(frozen=True, slots=True)
class Skip:
    rule_index: int
    rule_id: str
    reason: str  # e.g. "tool 'delete_x' does not match 'read_*'"


@dataclass(frozen=True, slots=True)
class Explanation:
    decision: Decision
    skipped: tuple[Skip, ...] = field(default=())  # every rule before the deciding one


class _Check(Protocol):
    def test(self, call: CallContext) -> bool: ...
    def why_not(self, call: CallContext) -> str: ...


class CompiledRule:
    __slots__ = ("args", "checks", "decision", "index", "plain", "rule")

    def __init__(self, index: int, rule: Rule, version: int | None) -> None:
        m = rule.match
        plain: list[_Check] = []
        if m.methods is not None:
            plain.append(MethodCheck(m.methods))
        if m.tools is not None:
            plain.append(NameCheck(m.tools))
        if m.servers is not None:
            plain.append(ServerCheck(m.servers))
        if m.keys is not None:
            plain.append(KeyCheck(m.keys))
        if m.key_tags is not None:
            plain.append(TagCheck(m.key_tags))
        if m.roles is not None:
            plain.append(RoleCheck(m.roles))
        if m.time is not None:
            plain.append(TimeCheck(m.time))
        self.index = index
        self.rule = rule
        self.plain = tuple(plain)  # everything but the arguments (what tools/list can know)
        self.args = tuple(ArgCheck(c) for c in m.arguments)
        self.checks: tuple[_Check, ...] = self.plain + self.args
        message = rule.message
        if rule.action == "deny" and message is None:
            message = f"Denied by policy rule {rule.id}."
        self.decision = Decision(
            rule.action, rule.id, index, version, message, f"matched rule {rule.id}",
            rule.rate_limit,
        )  # fmt: skip

    def matches(self, call: CallContext) -> bool:
        for check in self.checks:  # noqa: SIM110 (a plain loop: no generator on the hot path)
            if not check.test(call):
                return False
        return True

    def why_not(self, call: CallContext) -> str | None:
        if not self.rule.enabled:
            return "rule disabled"
        for check in self.checks:
            if not check.test(call):
                return check.why_not(call)
        return None


class CompiledPolicy:
    """An ordered, indexed rule list with its posture and version; immutable once built."""

    def __init__(self, rules: Sequence[Rule], *, posture: Posture, version: int | None) -> None:
        self.posture: Posture = validate_posture(posture)
        self.version = version
        self.rules = tuple(CompiledRule(i, rule, version) for i, rule in enumerate(rules))
        message = "Denied: no policy rule allows this call." if posture == "deny" else None
        self.default = Decision(posture, None, None, version, message, f"default posture {posture}")
        self._methods = ValueIndex()
        self._keys = ValueIndex()
        self._roles = ValueIndex()
        self._tags = ValueIndex()
        self._servers = GlobIndex()
        self._names = GlobIndex()
        for compiled in self.rules:
            rule = compiled.rule
            if not rule.enabled:
                continue  # a disabled rule has no bit anywhere, so it is never a candidate
            bit = 1 << compiled.index
            m = rule.match
            self._methods.add(bit, m.methods)
            self._keys.add(bit, m.keys)
            self._roles.add(bit, m.roles)
            self._tags.add(bit, m.key_tags)
            self._servers.add(bit, m.servers)
            self._names.add(bit, m.tools)

    def _candidates(self, call: CallContext, method: str, name: str | None) -> int:
        mask = self._methods.mask(method) & self._names.mask(name)
        if mask:
            mask &= self._servers.mask(call.server_slug) & self._keys.mask(call.key_id)
        if mask:
            mask &= self._roles.mask(call.role) & self._tags.mask_any(call.key_tags)
        return mask

    def first_match(self, call: CallContext) -> CompiledRule | None:
        rules = self.rules
        for index in bits(self._candidates(call, call.method, call.name)):
            compiled = rules[index]
            if compiled.matches(call):
                return compiled
        return None

    def decide(self, call: CallContext) -> Decision:
        compiled = self.first_match(call)
        return self.default if compiled is None else compiled.decision

    def explain(self, call: CallContext) -> Explanation:
        """The decision, and why each rule before the deciding one was skipped (unindexed)."""
        skipped: list[Skip] = []
        for compiled in self.rules:
            reason = compiled.why_not(call)
            if reason is None:
                return Explanation(compiled.decision, tuple(skipped))
            skipped.append(Skip(compiled.index, compiled.rule.id, reason))
        return Explanation(self.default, tuple(skipped))

    def tool_visible(self, call: CallContext, tool: str) -> bool:
        """Whether tools/list should show `tool` to this caller.

        A tool is hidden only if every `tools/call` of it would be denied, whatever the
        arguments: rules are walked as for a call with unknown arguments; a rule with argument
        conditions may or may not apply, so an allow/alert one shows the tool and a deny one
        is passed over; the first rule without argument conditions decides.
        """
        probe = CallContext(
            org_id=call.org_id, server_slug=call.server_slug, method="tools/call", name=tool,
            key_id=call.key_id, key_tags=call.key_tags, role=call.role, now=call.now,
        )  # fmt: skip
        rules = self.rules
        for index in bits(self._candidates(probe, "tools/call", tool)):
            compiled = rules[index]
            if not all(check.test(probe) for check in compiled.plain):
                continue
            if compiled.rule.action != "deny":
                return True
            if not compiled.args:
                return False
        return self.posture == "allow"
