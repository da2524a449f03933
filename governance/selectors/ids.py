"""Turning an id from a URL into a database key: a malformed id is a miss (404), not an error."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError

# What a lookup by a malformed id raises: a miss, shown as 404 like another organisation's object.
MISSES = (ValueError, TypeError, ValidationError, OverflowError)


def positive_int(value: Any) -> int:
    """A bigint primary key from a URL; anything else raises ValueError."""
    number = int(str(value))
    if not 0 < number < 2**63:
        raise ValueError(value)
    return number
