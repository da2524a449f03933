"""An organisation's published policy, compiled once and shared read-only by every request.

The proxy keeps one `PolicySnapshot` per organisation in memory and swaps the whole object when
a new version is published (DESIGN.md section 3); nothing here touches Django, Redis or I/O, so
a snapshot can be built from the stored JSON anywhere, including in tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from governance.policy.engine import CallContext, CompiledPolicy, Decision, Explanation
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
        """The tools of a tools/list result that the caller may call with some arguments.

        `call` is the tools/list request; a tool entry without a string "name" is dropped (it
        could not be called anyway).
        """
        visible: list[ToolT] = []
        for tool in tools:
            name = tool.get("name") if isinstance(tool, Mapping) else None
            if isinstance(name, str) and self.tool_visible(call, name):
                visible.append(tool)
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
