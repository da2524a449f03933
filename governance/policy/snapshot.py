"""An organisation's published policy, compiled once and shared read-only by every request.

The proxy keeps one `PolicySnapshot` per organisation in memory and swaps the whole object when
a new version is published (DESIGN.md section 3); nothing here touches Django, Redis or I/O, so
a snapshot can be built from the stored JSON anywhere, including in tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from governance.policy.context import CallContext
from governance.policy.engine import CompiledPolicy, Decision, Explanation
from governance.policy.rules import Posture, Rule, validate_posture, validate_rules

ToolT = TypeVar("ToolT", bound=Mapping[str, Any])


@dataclass(frozen=True)
class PolicySnapshot:
    org_id: str
    version: int | None  # None: the organisation has never published a policy
    posture: Posture
    rules: tuple[Rule, ...] = ()
    compiled: CompiledPolicy = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        validate_posture(self.posture)
        compiled = CompiledPolicy(self.rules, posture=self.posture, version=self.version)
        object.__setattr__(self, "compiled", compiled)

    @classmethod
    def from_documents(
        cls, *, org_id: str, version: int | None, posture: str, documents: Any
    ) -> PolicySnapshot:
        """Validate the stored rule documents (raises `PolicyValidationError`) and compile."""
        return cls(org_id, version, validate_posture(posture), tuple(validate_rules(documents)))

    def decide(self, call: CallContext) -> Decision:
        """First matching rule, else the posture. Never raises for a call of this org."""
        if call.org_id != self.org_id:
            return self._wrong_org(call)
        return self.compiled.decide(call)

    def explain(self, call: CallContext) -> Explanation:
        """Dry run: the decision plus, for every rule before the deciding one, why it was
        skipped (for the console's policy tester and for support)."""
        if call.org_id != self.org_id:
            return Explanation(self._wrong_org(call))
        return self.compiled.explain(call)

    def tool_visible(self, call: CallContext, tool: str) -> bool:
        return call.org_id == self.org_id and self.compiled.tool_visible(call, tool)

    def filter_tools(self, call: CallContext, tools: Iterable[ToolT]) -> list[ToolT]:
        """The tools of a tools/list result that the caller may call with some arguments."""
        return self.filter_items(call, "tools/call", tools, "name")

    def filter_items(
        self, call: CallContext, target_method: str, items: Iterable[ToolT], key: str
    ) -> list[ToolT]:
        """The entries of a list result (tools, prompts, resources) the caller may use.

        `call` is the list request; `target_method` is what an entry is used with (tools/call,
        prompts/get, resources/read) and `key` the field naming it. An entry without a string
        name is dropped: it could not be called anyway, and a policy cannot judge it. A tool is
        kept when some arguments could be allowed; a prompt or resource when using it by name
        is not denied.
        """
        visible: list[ToolT] = []
        for item in items:
            name = item.get(key) if isinstance(item, Mapping) else None
            if not isinstance(name, str):
                continue
            if target_method == "tools/call":
                allowed = self.tool_visible(call, name)
            else:
                probe = replace(call, method=target_method, name=name, arguments=None)
                allowed = self.decide(probe).action != "deny"
            if allowed:
                visible.append(item)
        return visible

    def _wrong_org(self, call: CallContext) -> Decision:
        # A snapshot handed a call of another organisation is a bug in the caller: fail closed
        # and say so in the audit trail rather than apply the wrong tenant's rules.
        return Decision(
            "deny",
            None,
            None,
            self.version,
            "Denied: policy unavailable.",
            f"policy snapshot of organisation {self.org_id} asked about organisation {call.org_id}",
        )
