"""Readers for the primitive fields of a rule document, each failing with a message for people.

`Fields` reads the keys of one JSON object and collects every problem (unknown key, missing key,
wrong type) instead of stopping at the first, so the console can show them all at once.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any

MAX_PATTERN = 256
MAX_LIST = 1000
MAX_TEXT = 1000
MAX_JSON_DEPTH = 8
_RULE_ID = re.compile(r"[A-Za-z0-9_.:-]{1,64}")
# Server slugs are lowercase letters, digits, "_" and "-" (governance.models.SLUG_VALIDATOR);
# a server glob with any other character could never match.
_SLUG_GLOB = re.compile(r"[a-z0-9_*?-]+")
_CLOCK = re.compile(r"([01][0-9]|2[0-3]):([0-5][0-9])")


class FieldError(Exception):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class FieldErrors(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("; ".join(str(e) for e in errors))
        self.errors = errors


class Fields:
    """The keys of one JSON object at `where` (a dotted location such as "match.time")."""

    def __init__(self, value: Any, where: str, allowed: Iterable[str]) -> None:
        if not isinstance(value, dict):
            raise FieldError(where or "rule", "must be an object")
        self.value: dict[str, Any] = value
        self.where = where
        self.errors: list[FieldError] = []
        allowed = tuple(allowed)
        for key in value:
            if key not in allowed:
                self.errors.append(
                    FieldError(self.at(str(key)), f"unknown field; expected one of {list(allowed)}")
                )

    def at(self, key: str) -> str:
        return f"{self.where}.{key}" if self.where else key

    def get(
        self,
        key: str,
        read: Callable[..., Any],
        *args: Any,
        required: bool = False,
        default: Any = None,
    ) -> Any:
        """`read(value, location, *args)` on the key, or `default` (recording why) if it fails."""
        if key not in self.value:
            if required:
                self.errors.append(FieldError(self.at(key), "is required"))
            return default
        try:
            return read(self.value[key], self.at(key), *args)
        except FieldError as exc:
            self.errors.append(exc)
        except FieldErrors as exc:
            self.errors.extend(exc.errors)
        return default

    def add(self, key: str, message: str) -> None:
        self.errors.append(FieldError(self.at(key), message))

    def check(self) -> None:
        if self.errors:
            raise FieldErrors(self.errors)


def text(value: Any, where: str, max_length: int = MAX_TEXT) -> str:
    if not isinstance(value, str) or not value.strip():
        raise FieldError(where, "must be a non-empty string")
    if len(value) > max_length:
        raise FieldError(where, f"must be at most {max_length} characters")
    return value


def rule_id(value: Any, where: str) -> str:
    if not isinstance(value, str) or not _RULE_ID.fullmatch(value):
        raise FieldError(where, "must be 1-64 characters among letters, digits and _ . : -")
    return value


def choice(value: Any, where: str, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise FieldError(where, f"must be one of {list(allowed)}, not {_show(value)}")
    return value


def boolean(value: Any, where: str) -> bool:
    if not isinstance(value, bool):
        raise FieldError(where, f"must be true or false, not {_show(value)}")
    return value


def integer(value: Any, where: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FieldError(where, f"must be an integer from {low} to {high}, not {_show(value)}")
    return value


def string_list(
    value: Any, where: str, item: Callable[[str, str], None] | None = None
) -> tuple[str, ...]:
    """A non-empty list of non-empty strings; `item(string, location)` may refuse one."""
    if not isinstance(value, list) or not value:
        raise FieldError(where, "must be a non-empty list of strings")
    if len(value) > MAX_LIST:
        raise FieldError(where, f"must have at most {MAX_LIST} items")
    errors: list[FieldError] = []
    for i, entry in enumerate(value):
        location = f"{where}[{i}]"
        if not isinstance(entry, str) or not entry:
            errors.append(FieldError(location, f"must be a non-empty string, not {_show(entry)}"))
        elif len(entry) > MAX_PATTERN:
            errors.append(FieldError(location, f"must be at most {MAX_PATTERN} characters"))
        elif item is not None:
            try:
                item(entry, location)
            except FieldError as exc:
                errors.append(exc)
    if errors:
        raise FieldErrors(errors)
    return tuple(value)


def server_globs(value: Any, where: str) -> tuple[str, ...]:
    def slug(entry: str, location: str) -> None:
        if not _SLUG_GLOB.fullmatch(entry):
            raise FieldError(
                location,
                f"{entry!r} can never match a server slug: use lowercase letters, digits, "
                "'_', '-' and the wildcards '*' and '?'",
            )

    return string_list(value, where, slug)


def methods(value: Any, where: str, known: frozenset[str]) -> tuple[str, ...]:
    def method(entry: str, location: str) -> None:
        if entry not in known:
            raise FieldError(location, f"unknown MCP method {entry!r}; known: {sorted(known)}")

    return string_list(value, where, method)


def clock(value: Any, where: str, end: bool = False) -> int:
    """'HH:MM' as minutes after midnight; an end may be '24:00'."""
    if end and value == "24:00":
        return 24 * 60
    found = _CLOCK.fullmatch(value) if isinstance(value, str) else None
    if found is None:
        raise FieldError(where, f"must be a time 'HH:MM' from 00:00 to 23:59, not {_show(value)}")
    return int(found.group(1)) * 60 + int(found.group(2))


def json_value(value: Any, where: str, depth: int = 0) -> Any:
    """A JSON value (finite numbers, string keys, bounded depth); lists become tuples."""
    if depth > MAX_JSON_DEPTH:
        raise FieldError(where, f"is nested deeper than {MAX_JSON_DEPTH} levels")
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise FieldError(where, "must be a finite number")
        return value
    if isinstance(value, (list, tuple)):
        if len(value) > MAX_LIST:
            raise FieldError(where, f"must have at most {MAX_LIST} items")
        return tuple(json_value(v, f"{where}[{i}]", depth + 1) for i, v in enumerate(value))
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise FieldError(where, "object keys must be strings")
        return {k: json_value(v, f"{where}.{k}", depth + 1) for k, v in value.items()}
    raise FieldError(where, f"must be a JSON value, not {type(value).__name__}")


def _show(value: Any) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:37] + "..."
