"""One proxied exchange: who called which server with what, and the audit event it becomes.

The proxy (proxy.app) builds one per POST and per standalone GET stream; the answer paths
(proxy.outcomes, proxy.forwarding, proxy.streaming) read it and record it.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from governance.policy import Decision, PolicySnapshot
from governance.runtime import flags
from governance.runtime.hotstate import RateCheck
from proxy import audit, eras
from proxy.auth import Principal
from proxy.jsonrpc import Message
from proxy.runtime import OrgConfig, ServerConfig


@dataclass
class Exchange:
    principal: Principal
    server: ServerConfig
    org: OrgConfig | None
    msg: Message | None
    era: eras.Era
    session_id: str | None
    binding: dict[str, Any] | None
    started: float
    request_bytes: int
    snapshot: PolicySnapshot | None = None
    upstream_status: int | None = None
    upstream_ms: float | None = None
    response_bytes: int = 0
    receive: Any = None
    circuit_trial: bool = False  # this call probes a half-open circuit (proxy.breaker)
    slot: str | None = None  # 2026-07-28 era: the agent slot and its session's generation
    generation: int = 0

    def client_info(self) -> dict[str, Any] | None:
        # Legacy clients introduce themselves once, in initialize; the session binding keeps it.
        return eras.client_info(self.msg) or (self.binding or {}).get("client")

    def call_context(self) -> Any:
        from governance.policy.context import CallContext

        msg = self.msg
        assert msg is not None
        return CallContext(
            org_id=self.principal.org_id,
            server_slug=self.server.slug,
            method=msg.method or "",
            name=msg.name,
            arguments=msg.arguments,
            key_id=self.principal.key_id,
            key_tags=frozenset(self.principal.key_tags),
            role=self.principal.role,
            now=datetime.now(UTC),
        )

    def rule_rate_check(self, decision: Decision) -> RateCheck:
        limit = decision.rate_limit
        assert limit is not None
        per = limit.per
        scope_value = {
            "org": self.principal.org_id,
            "session": self.session_id or self.principal.identity,
        }.get(per, self.principal.identity)
        return RateCheck(
            key=f"rule:{self.principal.org_id}:{decision.rule_id}:{per}:{scope_value}",
            limit=int(limit.limit),
            period_s=float(limit.window_s),
        )

    def decision_meta(self, decision: Decision) -> dict[str, Any]:
        return {
            "action": decision.action,
            "rule": decision.rule_id,
            "version": decision.version,
            "reason": decision.reason,
        }

    def denial_text(self, decision: Decision) -> str:
        where = f"rule {decision.rule_id}" if decision.rule_id else "the default posture"
        version = f" (policy v{decision.version})" if decision.version else ""
        text = f"Denied by igris: {where}{version}"
        if decision.message:
            text += f": {decision.message}"
        return text

    def response_headers(self) -> list[tuple[bytes, bytes]]:
        if not self.session_id:
            return []
        if self.era.modern:
            return [(b"igris-session-id", self.session_id.encode())]
        return [(b"mcp-session-id", self.session_id.encode())]

    def event(
        self,
        *,
        decision: str,
        result: str,
        decision_obj: Any = None,
        data: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        msg = self.msg
        method = msg.method if msg else None
        arguments = msg.arguments if msg else None
        redact_keys = self.org.redact_keys if self.org is not None else frozenset()
        fields = {
            "server_id": self.server.id,
            "server_slug": self.server.slug,
            "session_id": self.session_id,
            "key_id": self.principal.key_id,
            "method": method,
            "tool": msg.name if msg else None,
            "decision": decision,
            "rule_id": getattr(decision_obj, "rule_id", None),
            "policy_version": getattr(decision_obj, "version", None),
            "latency_ms": round((time.perf_counter() - self.started) * 1000, 3),
            "upstream_ms": round(self.upstream_ms, 3) if self.upstream_ms is not None else None,
            "upstream_status": self.upstream_status,
            "result": result,
            "request_bytes": self.request_bytes,
            "response_bytes": self.response_bytes,
            "args_digest": audit.args_digest(arguments),
            "arguments": audit.bounded_arguments(arguments, redact_keys),
            "client_info": self.client_info(),
            "protocol_version": self.era.version,
        }
        payload = dict(data or {})
        if decision_obj is not None and getattr(decision_obj, "reason", None):
            payload.setdefault("reason", decision_obj.reason)
        kind = "tool_call" if method == "tools/call" else "mcp_request"
        return audit.build_event(
            org_id=self.principal.org_id,
            type=kind,
            actor=self.principal.actor(),
            fields=fields,
            data=payload,
        )

    def kill_keys(self) -> list[str]:
        keys = [flags.kill_org(self.principal.org_id), flags.kill_server(self.server.id)]
        if self.principal.key_id:
            keys.append(flags.kill_key(self.principal.key_id))
        if self.session_id:
            keys.append(flags.kill_session(self.session_id))
        if self.slot:
            keys.append(flags.kill_slot(self.slot))
        return keys
