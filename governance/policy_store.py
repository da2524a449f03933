"""Build the compiled policy of an organisation from its newest published version.

The proxy keeps the result per process and swaps it when a publish is announced.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, replace
from typing import Any

from governance.policy.engine import CallContext, CompiledPolicy, Decision, compile_rules
from governance.policy.rules import validate_rules


@dataclass(frozen=True)
class OrgPolicy:
    """What the proxy asks of a policy: a decision per call and the visible part of a list."""

    org_id: str
    version: int | None
    compiled: CompiledPolicy

    def decide(self, call: CallContext) -> Decision:
        return self.compiled.decide(call)

    def filter_items(
        self, call: CallContext, target_method: str, items: list[Any], key: str
    ) -> list[Any]:
        kept = []
        for item in items:
            name = item.get(key) if isinstance(item, dict) else None
            if not isinstance(name, str):
                kept.append(item)
                continue
            if target_method == "tools/call":
                visible = self.compiled.tool_visible(call, name)
            else:
                probe = replace(call, method=target_method, name=name, arguments=None)
                visible = self.compiled.decide(probe).action != "deny"
            if visible:
                kept.append(item)
        return kept


def build_org_policy(
    org_id: str, version: int | None, posture: str, documents: list[Any]
) -> OrgPolicy:
    rules = validate_rules(documents)
    return OrgPolicy(org_id, version, compile_rules(rules, posture=posture, version=version))  # type: ignore[arg-type]


def snapshot_for_org(org_id: str) -> OrgPolicy:
    from governance.models import Organization, PolicyVersion

    # The posture is the organisation's current setting (changing it is announced like a publish);
    # each version also records the posture it was published under, for history.
    posture = (
        Organization.objects.filter(pk=uuid.UUID(str(org_id)))
        .values_list("default_posture", flat=True)
        .first()
        or "deny"
    )
    latest = PolicyVersion.objects.filter(org_id=uuid.UUID(str(org_id))).order_by("-number").first()
    if latest is not None:
        return build_org_policy(str(org_id), latest.number, posture, latest.rules)
    return build_org_policy(str(org_id), None, posture, [])
