"""Whether a JSON value can be stored as it is (PostgreSQL jsonb, the audit chain's encoding).

One check for every door JSON comes in by (the REST API, ingestion): jsonb refuses U+0000, UTF-8
cannot carry an unpaired surrogate, the canonical encoding has no NaN or infinity, and deeply
nested values are refused before they cost recursion.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

MAX_DEPTH = 64


def unstorable_reason(value: Any, depth: int = 0) -> str | None:
    """Why `value` cannot be stored, as a predicate ("contains a NUL character"), or None."""
    if depth > MAX_DEPTH:
        return f"is nested too deeply (more than {MAX_DEPTH} levels)"
    if isinstance(value, str):
        if "\x00" in value:
            return "contains a NUL character"
        if not value.isascii():
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return "contains invalid Unicode (an unpaired surrogate)"
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "contains a non-finite number"
    if isinstance(value, Mapping):
        for key, item in value.items():
            reason = unstorable_reason(key, depth + 1) or unstorable_reason(item, depth + 1)
            if reason:
                return reason
    elif isinstance(value, list):
        for item in value:
            reason = unstorable_reason(item, depth + 1)
            if reason:
                return reason
    return None
