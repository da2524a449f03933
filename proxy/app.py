"""The MCP proxy: a plain ASGI application at /proxy/<server-slug>/mcp (DESIGN.md §2-3).

This module orchestrates only: authentication (proxy.auth), era rules (proxy.eras), sessions
(proxy.sessions), policy decisions (governance.policy), forwarding (proxy.forwarding, over
proxy.upstream behind the per-server circuit breakers of proxy.breaker), answers without the
upstream and the audit before any answer (proxy.outcomes), and the standalone GET stream and
DELETE of a session (proxy.standalone). Nothing here touches the ORM per call.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError

from governance.policy.engine import Decision
from governance.runtime import flags
from governance.runtime.hotstate import RateCheck, RateResult, get_hotstate
from governance.runtime.standing import EPOCH_FLAG, ensure_standing
from governance.ssrf import AddressPolicy
from proxy import audit, eras, jsonrpc
from proxy.anomalies import Detector
from proxy.auth import AuthFailure, Principal, authenticate
from proxy.breaker import Breakers, Refusal
from proxy.deps import ProxyDeps
from proxy.exchange import Exchange
from proxy.forwarding import circuit_open, relay
from proxy.http import (
    BodyTimeout,
    BodyTooLarge,
    ClientGone,
    Receive,
    Scope,
    Send,
    header_map,
    read_body,
)
from proxy.http import send_rpc_error as rpc_error
from proxy.outcomes import Rejection, deny, rate_limited, refuse, state_store_down
from proxy.runtime import Runtime, ServerConfig
from proxy.sessions import SessionRecorder, parse_binding
from proxy.standalone import stream_or_delete
from proxy.upstream import Upstream
from proxy.usage import UsageMeter

log = logging.getLogger("igris.proxy")

POLICED_METHODS = {"tools/call", "resources/read", "prompts/get"}
# A tool whose description or schema changed after approval (a "rug pull") is refused until an
# operator approves the change, when the organisation asks for it.
DRIFT_DENIAL = Decision(
    action="deny",
    rule_id="igris:tool-drift",
    rule_index=None,
    version=None,
    message="this tool changed since it was approved; an operator must review and approve it",
    reason="tool drift",
)


@dataclass(frozen=True, slots=True)
class Stop:
    """A stop flag that refuses the message: killed or suspended, and why."""

    state: str
    reason: str
    ended: bool  # the client's own legacy session was killed: it must start a new one


@dataclass(frozen=True, slots=True)
class Admission:
    """An admitted message: its exchange, its policy decision and the verdicts of its limits,
    or the stop that refuses it."""

    exchange: Exchange
    decision: Decision | None
    limits: list[RateResult]
    stop: Stop | None


def _split_path(path: str) -> str | None:
    """/proxy/<slug>/mcp, /proxy/<slug>/mcp/ and /proxy/<slug> all route (no redirects)."""
    parts = [p for p in path.split("/") if p]
    if len(parts) == 2 and parts[0] == "proxy":
        return parts[1]
    if len(parts) == 3 and parts[0] == "proxy" and parts[2] == "mcp":
        return parts[1]
    return None


class ProxyApp:
    """One event loop's proxy: it admits each request and hands the answer to the paths in
    proxy.outcomes, proxy.forwarding and proxy.standalone, giving them its `deps`, not itself."""

    def __init__(self) -> None:
        runtime = Runtime(ttl_s=float(getattr(settings, "IGRIS_PROXY_CACHE_TTL_S", 30)))
        sessions = SessionRecorder()
        recorder = audit.AuditRecorder(embedded=not settings.REDIS_URL, hotstate=get_hotstate)
        breakers = Breakers(recorder, get_hotstate)
        runtime.on_circuit = breakers.on_flag
        self.deps = ProxyDeps(
            upstream=Upstream(
                max_per_host=int(settings.IGRIS_UPSTREAM_MAX_CONNECTIONS),
                policy=AddressPolicy.from_settings(settings),
            ),
            runtime=runtime,
            sessions=sessions,
            breakers=breakers,
            detector=Detector(
                recorder=recorder,
                hotstate=get_hotstate,
                sessions=sessions,
                catalog=runtime.catalog,
            ),
            recorder=recorder,
            hotstate_of=get_hotstate,
            max_body=int(settings.IGRIS_PROXY_MAX_BODY_BYTES),
            max_response=int(settings.IGRIS_PROXY_MAX_RESPONSE_BYTES),
            keepalive_s=float(settings.IGRIS_SSE_KEEPALIVE_S),
        )
        # The parts this class uses itself, by name.
        self.upstream, self.runtime, self.sessions = self.deps.upstream, runtime, sessions
        self.breakers, self.detector, self.recorder = breakers, self.deps.detector, recorder
        self.usage = UsageMeter(get_hotstate)
        self._tasks: list[asyncio.Task[Any]] = []
        self.body_timeout_s = float(settings.IGRIS_PROXY_BODY_TIMEOUT_S)
        self.backlog = audit.BacklogGauge(int(settings.IGRIS_AUDIT_STREAM_MAX_BACKLOG))
        self.key_rate_per_min = int(settings.IGRIS_KEY_RATE_PER_MIN)

    @property
    def hotstate(self) -> Any:
        return get_hotstate()

    async def startup(self) -> None:
        await self.upstream.start()
        self._tasks.append(
            asyncio.create_task(self.runtime.listen(self.hotstate), name="proxy-flags")
        )
        self._tasks.append(asyncio.create_task(self.sessions.run(), name="proxy-sessions"))
        self._tasks.append(asyncio.create_task(self.usage.run(), name="proxy-usage"))
        self._tasks.append(asyncio.create_task(self.detector.run(), name="proxy-anomaly-windows"))

    async def shutdown(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                log.debug("proxy task %s ended", task.get_name())
        self._tasks.clear()
        with contextlib.suppress(Exception):
            await self.detector.flush_windows()
        await self.detector.drain()
        await self.usage.flush()
        await self.sessions.flush()
        await self.upstream.close()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = {"v": False}

        async def tracked_send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                started["v"] = True
            await send(message)

        try:
            await self._handle(scope, receive, tracked_send)
        except ClientGone:
            return
        except (OperationalError, InterfaceError):
            # A cache miss (or an entry past IGRIS_PROXY_MAX_STALE_S) while the database is down.
            log.exception("database unavailable on %s %s", scope.get("method"), scope.get("path"))
            if not started["v"]:
                await rpc_error(
                    send,
                    503,
                    jsonrpc.INTERNAL_ERROR,
                    "igris cannot reach its database; retry shortly.",
                    headers=[(b"retry-after", b"5")],
                )
        except Exception:
            # Whatever failed inside igris, the client gets a JSON-RPC error it can act on, never
            # a bare 500: 503 with Retry-After (the failures seen here are transient: a client or
            # store that broke under it), and a reference that finds the traceback in the log.
            reference = secrets.token_hex(6)
            log.exception(
                "proxy error %s on %s %s", reference, scope.get("method"), scope.get("path")
            )
            if not started["v"]:
                await rpc_error(
                    send,
                    503,
                    jsonrpc.INTERNAL_ERROR,
                    f"igris hit an internal error handling this request (reference {reference});"
                    " retry shortly.",
                    data={"reason": "internal_error", "reference": reference},
                    headers=[(b"retry-after", b"1")],
                )

    # --- request entry ----------------------------------------------------------------------------

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        slug = _split_path(scope["path"])
        if slug is None:
            await rpc_error(
                send,
                404,
                jsonrpc.INVALID_REQUEST,
                "Unknown proxy path: use /proxy/<server-slug>/mcp.",
            )
            return
        headers = header_map(scope)
        method = scope["method"]
        if method not in {"POST", "GET", "DELETE"}:
            await rpc_error(
                send,
                405,
                jsonrpc.INVALID_REQUEST,
                f"Method {method} is not allowed.",
                headers=[(b"allow", b"GET, POST, DELETE")],
            )
            return
        try:
            principal = await authenticate(scope, headers, slug)
        except AuthFailure as exc:
            await rpc_error(
                send,
                exc.status,
                exc.code,
                exc.message,
                data={"reason": exc.reason},
                headers=exc.headers,
            )
            return
        server = await self.runtime.server(principal.org_id, slug)
        reject = Rejection(self.recorder, send, principal, slug, server.id if server else None)
        if server is None:
            await reject(
                404, jsonrpc.INVALID_REQUEST, f"No MCP server '{slug}' in this organisation."
            )
            return
        if principal.allowed_server_ids and server.id not in principal.allowed_server_ids:
            await reject(
                403,
                jsonrpc.FORBIDDEN,
                f"This API key may not reach the server '{slug}'.",
                data={"reason": "server_not_allowed"},
            )
            return
        if not server.enabled:
            await reject(503, jsonrpc.SERVER_DISABLED, f"The server '{slug}' is disabled.")
            return
        if method == "POST":
            await self._post(scope, receive, send, headers, principal, server)
        else:
            await stream_or_delete(self.deps, method, receive, send, headers, principal, server)

    # --- POST: one JSON-RPC message -------------------------------------------------------------

    async def _post(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        headers: dict[str, str],
        principal: Principal,
        server: ServerConfig,
    ) -> None:
        """One POST: read the message, admit it (one hot-state round trip), answer it."""
        started = time.perf_counter()
        reject = Rejection(self.recorder, send, principal, server.slug, server.id)
        read = await self._read_message(receive, headers, reject)
        if read is None:
            return
        body, msg, era = read
        admission = await self._admit(
            send, reject, headers, principal, server, msg, era, len(body), started, receive
        )
        if admission is not None:
            await self._respond(send, headers, body, admission)

    async def _read_message(
        self, receive: Receive, headers: dict[str, str], reject: Rejection
    ) -> tuple[bytes, jsonrpc.Message, eras.Era] | None:
        """The body, its one JSON-RPC message and its protocol era; None once answered."""
        content_type = headers.get("content-type", "").split(";")[0].strip().lower()
        if content_type != "application/json":
            await reject(415, jsonrpc.INVALID_REQUEST, "Content-Type must be application/json.")
            return None
        try:
            body = await read_body(receive, self.deps.max_body, self.body_timeout_s)
        except BodyTooLarge:
            await reject(
                413,
                jsonrpc.INVALID_REQUEST,
                f"The request body exceeds the limit of {self.deps.max_body} bytes.",
            )
            return None
        except BodyTimeout:
            # Closing the connection matters: left open, the rest of a trickled body would keep
            # it alive (uvicorn restarts its keep-alive timer on every byte received).
            await reject(
                408,
                jsonrpc.INVALID_REQUEST,
                f"The request body did not arrive within {self.body_timeout_s:g} s.",
                headers=[(b"connection", b"close")],
            )
            return None
        try:
            parsed = jsonrpc.parse_body(body)
            if isinstance(parsed, list):
                raise jsonrpc.JsonRpcError(
                    jsonrpc.INVALID_REQUEST,
                    "Batch requests are not supported (removed in MCP 2025-06-18); "
                    "send one message per POST.",
                )
            era = eras.classify(headers, parsed)
        except jsonrpc.JsonRpcError as exc:
            await reject(exc.status, exc.code, exc.message, id=exc.id, data=exc.data)
            return None
        return body, parsed, era

    async def _admit(
        self,
        send: Send,
        reject: Rejection,
        headers: dict[str, str],
        principal: Principal,
        server: ServerConfig,
        msg: jsonrpc.Message,
        era: eras.Era,
        request_bytes: int,
        started: float,
        receive: Receive,
    ) -> Admission | None:
        """Who and what: the session, the policy decision, the stops and the rate limits, read
        and applied in one hot-state round trip. None once answered."""
        if (
            msg.kind == "request"
            and not self.recorder.embedded
            and await self.backlog.full(self.hotstate)
        ):
            # Fail closed rather than trim the stream: nothing is forwarded that cannot be
            # recorded, and nothing is recorded here either, since that would grow the backlog.
            await rpc_error(
                send,
                503,
                jsonrpc.AUDIT_UNAVAILABLE,
                "audit backlog full: igris is not forwarding calls until its audit writer "
                "catches up.",
                id=msg.id,
                data={"reason": "audit_backlog_full", "limit": self.backlog.limit},
                headers=[(b"retry-after", b"5")],
            )
            return None
        org = await self.runtime.org(principal.org_id)
        if org is None:
            await rpc_error(
                send, 404, jsonrpc.INVALID_REQUEST, "This organisation no longer exists."
            )
            return None

        # Session: legacy sessions are bound to the key that created them; modern calls belong
        # to the current generation of their (key, server, client) slot, read with the flags.
        session_id: str | None = None
        slot: str | None = None
        flag_keys = [flags.kill_org(org.id), flags.kill_server(server.id)]
        if principal.key_id:
            flag_keys.append(flags.kill_key(principal.key_id))
        if era.modern:
            slot = eras.modern_slot(principal.identity, server.id, msg)
            # Until the flags are read, the slot stands for the session (per-session rate rules
            # count per slot in this era).
            session_id = slot
            flag_keys += [flags.session_generation(slot), flags.kill_slot(slot)]
        elif msg.method != "initialize":
            session_id = headers.get("mcp-session-id")
            if not session_id:
                await reject(
                    400,
                    jsonrpc.INVALID_REQUEST,
                    "Bad Request: missing Mcp-Session-Id header.",
                    id=msg.id,
                    method=msg.method,
                )
                return None
            flag_keys.append(flags.session_binding(session_id))
            flag_keys.append(flags.kill_session(session_id))
        exchange = Exchange(
            principal=principal,
            server=server,
            org=org,
            msg=msg,
            era=era,
            session_id=session_id,
            binding=None,
            started=started,
            request_bytes=request_bytes,
            receive=receive,
        )
        decision: Decision | None = None
        checks: list[RateCheck] = []
        if msg.kind == "request":
            if msg.method in POLICED_METHODS or msg.method in eras.LIST_METHODS:
                snapshot = await self.runtime.snapshot(org.id)
                exchange.snapshot = snapshot
                if msg.method in POLICED_METHODS:
                    decision = snapshot.decide(exchange.call_context())
            if (
                msg.method == "tools/call"
                and org.block_drifted_tools
                and (decision is None or decision.action != "deny")
            ):
                info = (await self.runtime.catalog.tools(server.id)).get(msg.name or "")
                if info is not None and info.drifted:
                    decision = DRIFT_DENIAL
            checks.append(
                RateCheck(
                    key=f"key:{principal.identity}", limit=self.key_rate_per_min, period_s=60.0
                )
            )
            if decision is not None and decision.rate_limit is not None:
                checks.append(exchange.rule_rate_check(decision))
        # One round trip: kill flags and the session binding, then (unless stopped) the limits.
        # The epoch flag comes along: missing, it means the hot state lost its data (and with it
        # every stop), which are restored from the database before anything is admitted.
        flag_keys.append(EPOCH_FLAG)
        try:
            values, results = await self.hotstate.admit(flag_keys, checks)
            if values[-1] is None:
                if not await ensure_standing(self.hotstate):
                    raise RuntimeError("the hot state's stops are still being restored")
                # Re-read the flags only: the limits were applied once already.
                values = await self.hotstate.get_flags(flag_keys)
                if any(v for k, v in zip(flag_keys, values, strict=True) if k.startswith("kill:")):
                    results = None
                elif results is None:
                    values, results = await self.hotstate.admit(flag_keys, checks)
        except Exception:
            await state_store_down(send, msg.id, "admission")
            return None
        flag_values = dict(zip(flag_keys, values, strict=True))
        if slot is not None:
            generation = flags.parse_generation(flag_values[flags.session_generation(slot)])
            exchange.session_id = eras.modern_session_id(slot, generation)
            exchange.slot = slot
            exchange.generation = generation
        elif session_id:
            binding = parse_binding(flag_values.get(flags.session_binding(session_id)))
            if (
                binding is None
                or binding.get("org") != org.id
                or binding.get("who") != principal.identity
                or binding.get("server") != server.id
            ):
                await reject(
                    404, jsonrpc.INVALID_REQUEST, "Session not found.", id=msg.id, method=msg.method
                )
                return None
            exchange.binding = binding
        stop: Stop | None = None
        if results is None:
            key = next(k for k in flag_keys if k.startswith("kill:") and flag_values.get(k))
            state, reason = flags.parse_kill(flag_values[key])  # type: ignore[misc]
            # A killed legacy session is over: 404 is how MCP's transports tell a client to
            # initialize a new session (2025-03-26, session management). Other stops (a key, a
            # server, the organisation) refuse whatever session is used, so they stay 403.
            ended = state == "killed" and key == flags.kill_session(session_id)
            stop = Stop(state, reason, ended)
        return Admission(exchange, decision, results or [], stop)

    async def _respond(
        self, send: Send, headers: dict[str, str], body: bytes, admission: Admission
    ) -> None:
        """Answer an admitted message: refused, rate limited, denied or forwarded."""
        exchange, decision = admission.exchange, admission.decision
        msg = exchange.msg
        assert msg is not None
        if admission.stop is not None:
            stop = admission.stop
            await refuse(self.deps, send, exchange, stop.state, stop.reason, ended=stop.ended)
            return
        if msg.kind != "request":
            await self._forward(send, exchange, headers, body, decision=None)
            return
        denied = [r for r in admission.limits if not r.allowed]
        if denied:
            retry = max(r.retry_after_s for r in denied)
            await rate_limited(self.deps, send, exchange, retry)
            return
        if decision is not None and decision.action == "deny":
            await deny(self.deps, send, exchange, decision)
        else:
            await self._forward(send, exchange, headers, body, decision=decision)
        if msg.method == "tools/call":
            self.usage.count(exchange.principal.org_id)
        self.detector.after_call(exchange, decision)

    # --- forwarding ------------------------------------------------------------------------

    async def _forward(
        self,
        send: Send,
        exchange: Exchange,
        headers: dict[str, str],
        body: bytes,
        *,
        decision: Decision | None,
    ) -> None:
        admission = await self.breakers.admit(exchange.server)
        if isinstance(admission, Refusal):
            await circuit_open(self.deps, send, exchange, admission, decision)
            return
        exchange.circuit_trial = admission
        try:
            await relay(self.deps, send, exchange, headers, body, decision=decision)
        finally:
            if admission:
                await self.breakers.finish_trial(exchange.server)


def build_proxy_app() -> ProxyApp:
    return ProxyApp()
