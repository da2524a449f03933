"""Outbound calls to upstream MCP servers off the hot path (connection test, tool refresh).

The proxy's pooled aiohttp client (`proxy/upstream.py`) serves agents; these two operator
actions are rare, synchronous and short, so they use httpx (pyproject: "outbound calls off the
hot path"). Tests replace nothing here: they point a server at a real MCP upstream.

Both speak the legacy Streamable HTTP handshake (MCP 2025-03-26 to 2025-11-25, "Transports"):
POST `initialize`, then with the `Mcp-Session-Id` the server returned (if any) and the
negotiated `MCP-Protocol-Version`, POST `notifications/initialized` (202) and the request; each
answer is `application/json` or a `text/event-stream` carrying the JSON-RPC response; the
session is closed with DELETE.
"""

from __future__ import annotations

import contextlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import httpx
from django.conf import settings

from governance.models import McpServer
from governance.ssrf import AddressPolicy, UnsafeUpstream, check_upstream_url
from governance.upstream_auth import upstream_auth_header

# The newest revision that still begins with `initialize` (MCP 2025-11-25, lifecycle).
PROTOCOL_VERSION = "2025-11-25"
CLIENT_INFO = {"name": "igris-console", "version": "1"}
TEST_TIMEOUT_S = 5.0
REFRESH_TIMEOUT_S = 30.0
MAX_BODY_BYTES = 8 * 1024 * 1024
MAX_PAGES = 50


class UpstreamProblem(Exception):
    """The upstream could not be reached or did not answer as an MCP server."""


@dataclass
class ConnectionReport:
    reachable: bool
    latency_ms: float
    status: int | None = None
    protocol_version: str | None = None
    server_info: dict[str, Any] | None = None
    capabilities: dict[str, Any] | None = None
    error: str | None = None


@dataclass
class ToolListing:
    protocol_version: str | None
    tools: list[dict[str, Any]] = field(default_factory=list)


def _auth_headers(server: McpServer) -> dict[str, str]:
    header = upstream_auth_header(server)
    return dict([header]) if header else {}


def _sse_messages(lines: Any) -> Any:
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                yield "\n".join(data)
            data = []
        elif line.startswith("data:"):
            data.append(line[5:].removeprefix(" "))
    if data:
        yield "\n".join(data)


def _match(payload: Any, request_id: int) -> dict[str, Any] | None:
    items = payload if isinstance(payload, list) else [payload]
    for item in items:
        if (
            isinstance(item, dict)
            and item.get("id") == request_id
            and ("result" in item or "error" in item)
        ):
            return item
    return None


class _Session:
    def __init__(self, client: httpx.Client, server: McpServer, deadline: float) -> None:
        self.client = client
        self.url = server.upstream_url
        self.headers = {
            "Accept": "application/json, text/event-stream",
            "Content-Type": "application/json",
            **_auth_headers(server),
        }
        self.deadline = deadline
        self.next_id = 0
        self.last_status: int | None = None

    def _check_deadline(self) -> None:
        if time.monotonic() > self.deadline:
            raise UpstreamProblem("The upstream server took too long to answer.")

    def request(self, method: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        self.next_id += 1
        request_id = self.next_id
        message = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
        with self.client.stream("POST", self.url, json=message, headers=self.headers) as response:
            self.last_status = response.status_code
            if method == "initialize" and response.headers.get("mcp-session-id"):
                self.headers["Mcp-Session-Id"] = response.headers["mcp-session-id"]
            if response.status_code != 200:
                raise UpstreamProblem(f"The upstream answered HTTP {response.status_code}.")
            kind = response.headers.get("content-type", "").split(";")[0].strip().lower()
            if kind == "text/event-stream":
                for text in _sse_messages(response.iter_lines()):
                    self._check_deadline()
                    try:
                        answer = _match(json.loads(text), request_id)
                    except ValueError:
                        continue
                    if answer is not None:
                        return self._result(answer)
                raise UpstreamProblem("The upstream's event stream ended without an answer.")
            if kind == "application/json":
                body = b""
                for chunk in response.iter_bytes():
                    body += chunk
                    if len(body) > MAX_BODY_BYTES:
                        raise UpstreamProblem("The upstream's answer is too large.")
                try:
                    answer = _match(json.loads(body), request_id)
                except ValueError:
                    answer = None
                if answer is None:
                    raise UpstreamProblem("The upstream did not answer with JSON-RPC.")
                return self._result(answer)
            raise UpstreamProblem(f"The upstream answered with content type '{kind or 'none'}'.")

    def _result(self, answer: dict[str, Any]) -> dict[str, Any]:
        if "error" in answer:
            error = answer["error"] if isinstance(answer["error"], dict) else {}
            raise UpstreamProblem(f"The upstream refused: {error.get('message', 'error')}.")
        result = answer.get("result")
        if not isinstance(result, dict):
            raise UpstreamProblem("The upstream's result is not an object.")
        return result

    def notify(self, method: str) -> None:
        message = {"jsonrpc": "2.0", "method": method}
        response = self.client.post(self.url, json=message, headers=self.headers)
        if response.status_code >= 400:
            raise UpstreamProblem(f"The upstream answered HTTP {response.status_code}.")

    def initialize(self) -> dict[str, Any]:
        result = self.request(
            "initialize",
            {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO},
        )
        version = result.get("protocolVersion")
        if isinstance(version, str):
            self.headers["MCP-Protocol-Version"] = version
        return result

    def close(self) -> None:
        if "Mcp-Session-Id" in self.headers:
            # The server expires sessions anyway; closing is a courtesy.
            with contextlib.suppress(httpx.HTTPError):
                self.client.delete(self.url, headers=self.headers)


def _check_address(server: McpServer) -> None:
    """The SSRF guard again at connection time: a name may resolve elsewhere than when saved."""
    try:
        check_upstream_url(server.upstream_url, policy=AddressPolicy.from_settings(settings))
    except UnsafeUpstream as exc:
        raise UpstreamProblem(str(exc)) from None


def _client(server: McpServer, timeout_s: float) -> httpx.Client:
    connect = min(server.connect_timeout_s, timeout_s)
    return httpx.Client(
        timeout=httpx.Timeout(timeout_s, connect=connect), follow_redirects=False, trust_env=False
    )


def _failure(exc: Exception) -> str:
    if isinstance(exc, UpstreamProblem):
        return str(exc)
    if isinstance(exc, httpx.TimeoutException):
        return "The upstream server timed out."
    if isinstance(exc, httpx.HTTPError):
        return f"The upstream connection failed ({type(exc).__name__})."
    return f"The upstream answer could not be read ({type(exc).__name__})."


def probe_connection(server: McpServer) -> ConnectionReport:
    """Send `initialize` and report whether an MCP server answered, in what version and how fast."""
    started = time.monotonic()
    with _client(server, TEST_TIMEOUT_S) as client:
        session = _Session(client, server, started + TEST_TIMEOUT_S)
        try:
            _check_address(server)
            result = session.initialize()
        except (httpx.HTTPError, UpstreamProblem, ValueError, UnicodeError) as exc:
            return ConnectionReport(
                reachable=False,
                latency_ms=round((time.monotonic() - started) * 1000, 3),
                status=session.last_status,
                error=_failure(exc),
            )
        latency = round((time.monotonic() - started) * 1000, 3)
        session.close()
    info = result.get("serverInfo")
    capabilities = result.get("capabilities")
    version = result.get("protocolVersion")
    return ConnectionReport(
        reachable=True,
        latency_ms=latency,
        status=session.last_status,
        protocol_version=version if isinstance(version, str) else None,
        server_info=info if isinstance(info, dict) else None,
        capabilities=capabilities if isinstance(capabilities, dict) else None,
    )


def list_tools(server: McpServer) -> ToolListing:
    """Handshake and `tools/list` (every page); raises UpstreamProblem with a readable reason."""
    started = time.monotonic()
    with _client(server, REFRESH_TIMEOUT_S) as client:
        session = _Session(client, server, started + REFRESH_TIMEOUT_S)
        try:
            _check_address(server)
            result = session.initialize()
            session.notify("notifications/initialized")
            tools: list[dict[str, Any]] = []
            cursor: str | None = None
            for _ in range(MAX_PAGES):
                page = session.request("tools/list", {"cursor": cursor} if cursor else {})
                items = page.get("tools")
                if not isinstance(items, list):
                    raise UpstreamProblem("The upstream's tools/list result has no tool list.")
                tools.extend(item for item in items if isinstance(item, dict))
                cursor = page.get("nextCursor")
                if not isinstance(cursor, str) or not cursor:
                    break
        except (httpx.HTTPError, UpstreamProblem, ValueError, UnicodeError) as exc:
            raise UpstreamProblem(_failure(exc)) from None
        finally:
            session.close()
    version = result.get("protocolVersion")
    return ToolListing(version if isinstance(version, str) else None, tools)
