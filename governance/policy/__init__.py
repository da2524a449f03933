"""The pure policy engine of the MCP proxy: rule documents in, `Decision`s out.

- `rules`: the stored JSON rule document (its shape is documented there), `validate_rules`.
- `engine`: `CallContext`, `Decision`, compilation into an indexed `CompiledPolicy`.
- `snapshot`: `PolicySnapshot`, one per organisation, with `decide`, `filter_tools`, `explain`.

No Django, Redis or I/O anywhere in this package (import-linter checks engine and rules).
"""

from __future__ import annotations

from governance.policy.context import CallContext
from governance.policy.engine import (
    CompiledPolicy,
    Decision,
    Explanation,
    Skip,
)
from governance.policy.regex_guard import UnsafeRegex, check_regex
from governance.policy.rules import (
    ArgCondition,
    Match,
    PolicyValidationError,
    RateLimit,
    Rule,
    RuleError,
    TimeWindow,
    validate_posture,
    validate_rules,
)
from governance.policy.snapshot import PolicySnapshot

__all__ = [
    "ArgCondition",
    "CallContext",
    "CompiledPolicy",
    "Decision",
    "Explanation",
    "Match",
    "PolicySnapshot",
    "PolicyValidationError",
    "RateLimit",
    "Rule",
    "RuleError",
    "Skip",
    "TimeWindow",
    "UnsafeRegex",
    "check_regex",
    "validate_posture",
    "validate_rules",
]
