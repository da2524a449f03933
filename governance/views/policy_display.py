"""Policy rules as people read them: labelled parts for the rule lists, the editor's JSON in the
order people write it, and whether a diff holds any change. Shared by the policy pages."""

from __future__ import annotations

import json
from typing import Any

from django.core.paginator import Page, Paginator

from governance.policy.rules import DAYS

# Rules a console page shows at once. A longer list is paginated and its JSON (the editor, a
# version's raw rules) is loaded on request, so a page at the rule cap (IGRIS_POLICY_MAX_RULES)
# stays about the size of one with 50 rules: 5,000 rules made a 5.4 MB policies page.
RULES_PER_PAGE = 50
# Rule ids a diff names before "and N more".
DIFF_IDS_SHOWN = 10


def _values(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    return str(value)


def _time_text(window: dict[str, Any]) -> str:
    days = window.get("days")
    if isinstance(days, list) and days:
        day_text = "every day" if sorted(days, key=DAYS.index) == list(DAYS) else _values(days)
    else:
        day_text = "every day"
    hours = f" {window['start']} to {window['end']}" if "start" in window else ""
    return f"{day_text}{hours} ({window.get('tz', '?')})"


def rule_view(index: int, document: Any) -> dict[str, Any]:
    """A validated rule document as labelled, readable parts for the templates."""
    doc = document if isinstance(document, dict) else {}
    match = doc.get("match") or {}
    parts: list[tuple[str, str]] = []
    for key, label in (
        ("servers", "servers"),
        ("methods", "methods"),
        ("tools", "tools"),
        ("keys", "API keys"),
        ("key_tags", "key tags"),
        ("roles", "roles"),
    ):
        if key in match:
            parts.append((label, _values(match[key])))
    for condition in match.get("arguments") or []:
        path, op = condition.get("path"), condition.get("op")
        if op == "exists":
            text = f"{path} is present" if condition.get("value", True) else f"{path} is absent"
        else:
            text = f"{path} {op} {json.dumps(condition.get('value'), ensure_ascii=False)}"
        parts.append(("argument", text))
    if "time" in match:
        parts.append(("time", _time_text(match["time"])))
    rate = doc.get("rate_limit")
    return {
        "index": index,
        "number": index + 1,
        "id": doc.get("id", "?"),
        "action": doc.get("action", "?"),
        "enabled": doc.get("enabled", True),
        "match": parts,
        "message": doc.get("message"),
        "description": doc.get("description"),
        "rate_limit": _rate_text(rate["limit"], rate["window_s"], rate["per"])
        if isinstance(rate, dict)
        else None,
    }


def _rate_text(limit: Any, window_s: Any, per: Any) -> str:
    return f"{limit} calls per {window_s} s per {per}"


def _rule_views(
    rules: list[Any], diff: dict[str, Any] | None = None, start: int = 0
) -> list[dict[str, Any]]:
    views = [rule_view(start + i, doc) for i, doc in enumerate(rules)]
    if diff:
        for view in views:
            if view["id"] in diff["added"]:
                view["change"] = "added"
            elif view["id"] in diff["changed"]:
                view["change"] = "changed"
    return views


def rule_page(
    rules: list[Any], number: Any, diff: dict[str, Any] | None = None
) -> tuple[Page, list[dict[str, Any]]]:
    """One page of rule views (`number` as given in the query string) and the page itself."""
    page = Paginator(rules, RULES_PER_PAGE).get_page(number)
    start = (page.number - 1) * RULES_PER_PAGE
    return page, _rule_views(list(page.object_list), diff, start)


def diff_shown(diff: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The ids a diff names on a page: the first few of each kind and how many more there are."""
    return {
        kind: {"ids": diff[kind][:DIFF_IDS_SHOWN], "more": max(0, len(diff[kind]) - DIFF_IDS_SHOWN)}
        for kind in ("added", "changed", "removed")
    }


# The order people write rules in. PostgreSQL's jsonb keeps keys sorted by length, so without this
# the editor would show "match" before "action".
_KEY_ORDER: dict[str, tuple[str, ...]] = {
    "rule": ("id", "action", "enabled", "message", "description", "match", "rate_limit"),
    "match": ("servers", "methods", "tools", "keys", "key_tags", "roles", "arguments", "time"),
    "condition": ("path", "op", "value"),
    "time": ("days", "start", "end", "tz"),
    "rate_limit": ("limit", "window_s", "per"),
}


def _ordered(value: Any, kind: str) -> Any:
    if not isinstance(value, dict):
        return value
    order = _KEY_ORDER[kind]
    keys = [k for k in order if k in value] + [k for k in value if k not in order]
    out = {}
    for key in keys:
        item = value[key]
        if kind == "rule" and key in ("match", "rate_limit"):
            item = _ordered(item, key)
        elif kind == "match" and key == "time":
            item = _ordered(item, "time")
        elif kind == "match" and key == "arguments" and isinstance(item, list):
            item = [_ordered(c, "condition") for c in item]
        out[key] = item
    return out


def _pretty(rules: Any) -> str:
    if isinstance(rules, list):
        rules = [_ordered(rule, "rule") for rule in rules]
    return json.dumps(rules, indent=2, ensure_ascii=False)


def _has_changes(diff: dict[str, Any]) -> bool:
    return bool(diff["added"] or diff["removed"] or diff["changed"] or diff["reordered"])
