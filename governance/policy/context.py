"""The call a policy decides on: one MCP request as the engine sees it (pure data).

Its own module so the engine and the condition evaluators can both use it without importing
each other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True, slots=True, kw_only=True)
class CallContext:
    """One MCP request as the policy sees it."""

    org_id: str
    server_slug: str
    method: str
    # The tool name (tools/call), the prompt name (prompts/get) or the uri (resources/read).
    name: str | None = None
    arguments: Mapping[str, Any] | None = None  # params.arguments
    key_id: str | None = None
    key_tags: frozenset[str] = frozenset()
    role: str | None = None
    now: datetime

    def __post_init__(self) -> None:
        if self.now.utcoffset() is None:
            raise ValueError("CallContext.now must be an aware datetime")
