"""Policy replay: recorded calls decided again by a policy, compared with what was recorded."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

from drf_spectacular.utils import extend_schema
from rest_framework.request import Request
from rest_framework.response import Response

from compliance.api.events import EXPORT_CHUNK, iso
from compliance.models import AuditEvent
from governance.api.base import ApiView
from governance.api.errors import ApiProblem, invalid
from governance.api.permissions import Access
from governance.api.serializers import ReplayRequestSerializer, ReplaySerializer
from governance.api.views.policies import compiled_policy
from governance.models import ApiKey, Membership, Organization
from governance.permissions import Action
from governance.policy import CallContext

REPLAY_MAX_RANGE = timedelta(days=31)
REPLAY_MAX_EVENTS = 100_000
REPLAY_MAX_EXAMPLES = 100
# Recorded decisions that the policy made; others (refused by a kill switch, observed through
# ingest) never reached it and are not compared.
ALLOWED, DENIED = frozenset({"allow", "alert", "rate_limited"}), frozenset({"deny"})


def _principals(org: Organization) -> tuple[dict[str, Any], dict[str, str]]:
    """Each key's (tags, creator's role) and each member's role, as they are now."""
    roles = {
        str(user_id): role
        for user_id, role in Membership.objects.filter(org=org).values_list("user_id", "role")
    }
    keys = {
        str(key_id): (frozenset(tags or ()), roles.get(str(creator)) if creator else None)
        for key_id, tags, creator in ApiKey.objects.filter(org=org).values_list(
            "id", "tags", "created_by_id"
        )
    }
    return keys, roles


def _verdict(decision: str | None) -> str | None:
    if decision in ALLOWED:
        return "allow"
    if decision in DENIED:
        return "deny"
    return None


class PolicyReplayView(ApiView):
    # A what-if over recorded calls changes nothing: the read scope is enough.
    access = {"POST": Access(Action.POLICIES_VIEW, scope="read")}
    problems = {"POST": ("422",)}

    @extend_schema(
        request=ReplayRequestSerializer,
        responses=ReplaySerializer,
        summary="Replay recorded tool calls of a time range against the draft or a version",
    )
    def post(self, request: Request) -> Response:
        data = self.body(ReplayRequestSerializer)
        start, end = data["from"], data["to"]
        if end <= start:
            raise invalid("to", "'to' must be after 'from'.")
        if end - start > REPLAY_MAX_RANGE:
            raise ApiProblem(
                422,
                "range_too_large",
                f"Replay at most {REPLAY_MAX_RANGE.days} days at a time.",
                errors=[{"field": "to", "message": "range too large", "code": "range_too_large"}],
            )
        compiled, _documents, label = compiled_policy(self.org, data["version"])
        calls = AuditEvent.objects.filter(
            org_id=self.org.id, type="tool_call", ts__gte=start, ts__lt=end
        )
        total = calls.order_by()[: REPLAY_MAX_EVENTS + 1].count()
        if total > REPLAY_MAX_EVENTS:
            raise ApiProblem(
                422,
                "too_many_events",
                f"More than {REPLAY_MAX_EVENTS} recorded calls in this range: narrow it.",
            )
        return Response(self._replay(compiled, label, calls, total))

    def _replay(self, compiled: Any, label: str, calls: Any, total: int) -> dict[str, Any]:
        keys, roles = _principals(self.org)
        org_id = str(self.org.id)
        counts = Counter[str]()
        per_rule = Counter[str]()
        examples: list[dict[str, Any]] = []
        columns = (
            "seq",
            "ts",
            "server_slug",
            "method",
            "tool",
            "arguments",
            "key_id",
            "actor",
            "decision",
        )
        rows = calls.order_by("seq").values_list(*columns).iterator(chunk_size=EXPORT_CHUNK)
        for seq, ts, server, method, tool, arguments, key_id, actor, decision in rows:
            old = _verdict(decision)
            if old is None:
                counts["skipped"] += 1
                continue
            tags, role = (
                keys.get(str(key_id), (frozenset(), None)) if key_id else (frozenset(), None)
            )
            if key_id is None and isinstance(actor, dict) and actor.get("kind") == "user":
                role = roles.get(str(actor.get("id")))
            new = compiled.decide(
                CallContext(
                    org_id=org_id,
                    server_slug=server or "",
                    method=method or "tools/call",
                    name=tool,
                    arguments=arguments if isinstance(arguments, dict) else None,
                    key_id=str(key_id) if key_id else None,
                    key_tags=tags,
                    role=role,
                    now=ts,
                )
            )
            per_rule[new.rule_id or "(default)"] += 1
            verdict = "deny" if new.action == "deny" else "allow"
            if verdict == old:
                counts["unchanged"] += 1
                continue
            counts["newly_denied" if verdict == "deny" else "newly_allowed"] += 1
            if len(examples) < REPLAY_MAX_EXAMPLES:
                examples.append(
                    {
                        "seq": seq,
                        "ts": iso(ts),
                        "server": server,
                        "tool": tool,
                        "old_decision": decision,
                        "new_decision": new.action,
                        "new_rule_id": new.rule_id,
                    }
                )
        evaluated = total - counts["skipped"]
        return {
            "policy": label,
            "total": total,
            "evaluated": evaluated,
            "skipped": counts["skipped"],
            "newly_denied": counts["newly_denied"],
            "newly_allowed": counts["newly_allowed"],
            "unchanged": counts["unchanged"],
            "per_rule": dict(per_rule),
            "examples": examples,
        }
