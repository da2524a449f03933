"""The one outbound seam of the hot path: a long-lived, pooled aiohttp client.

aiohttp, not httpx, because it is several times faster under concurrency on 2 cores
(reference/performance.md §3); keep that choice inside this module.

Every way an upstream can misbehave ends here as an UpstreamError with its JSON-RPC code:
unreachable or a connection that breaks (-31007), no complete answer within the server's
`total_timeout_s` or an SSE stream silent for longer than it (-31008), an answer over the size
limit (-31009). A JSON answer is bounded as a whole by the deadline, so a body that trickles in
cannot hold a connection forever; the caller closes the response on any error, which frees
the socket instead of returning a half-read connection to the pool.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from yarl import URL

from governance.ssrf import AddressPolicy, UnsafeUpstream
from proxy import jsonrpc


class UpstreamError(Exception):
    def __init__(self, code: int, message: str, *, status: int = 502) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass
class UpstreamResponse:
    status: int
    headers: dict[str, str]
    _response: aiohttp.ClientResponse
    idle_timeout_s: float
    deadline: float  # event-loop time by which a whole JSON answer must have arrived

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    async def read(self, limit: int) -> bytes:
        """Read a whole (JSON) body before the deadline, refusing more than `limit` bytes."""
        too_large = UpstreamError(
            jsonrpc.UPSTREAM_PROTOCOL, f"The upstream response exceeded {limit} bytes."
        )
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            raise too_large
        chunks: list[bytes] = []
        size = 0
        try:
            async with asyncio.timeout_at(self.deadline):
                async for chunk in self._response.content.iter_chunked(65536):
                    size += len(chunk)
                    if size > limit:
                        raise too_large
                    chunks.append(chunk)
        except TimeoutError:
            raise UpstreamError(
                jsonrpc.UPSTREAM_TIMEOUT,
                f"The upstream answer did not arrive within {self.idle_timeout_s:g} s.",
                status=504,
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                jsonrpc.UPSTREAM_UNREACHABLE,
                f"The upstream connection broke off mid-answer: {type(exc).__name__}.",
            ) from None
        return b"".join(chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError:
            raise UpstreamError(
                jsonrpc.UPSTREAM_TIMEOUT,
                f"The upstream stream went silent for {self.idle_timeout_s:g} s.",
                status=504,
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                jsonrpc.UPSTREAM_UNREACHABLE, f"The upstream stream broke: {type(exc).__name__}."
            ) from None

    def close(self) -> None:
        self._response.close()

    def release(self) -> None:
        self._response.release()


class _RefusedAddress(OSError):
    """Raised by the resolver for an address the SSRF policy refuses; aiohttp reports resolver
    failures as ClientConnectorDNSError carrying it."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class GuardedResolver(AbstractResolver):
    """Resolves with `inner` and refuses the whole answer when any address is outside the SSRF
    policy (governance.ssrf). aiohttp connects only to the addresses a resolver returns, so the
    check and the connection see the same addresses: the check is pinned to the connection."""

    def __init__(self, policy: AddressPolicy, inner: AbstractResolver | None = None) -> None:
        self.policy = policy
        self.inner = inner or aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        try:
            self.policy.check_addresses(host, [result["host"] for result in results])
        except UnsafeUpstream as exc:
            raise _RefusedAddress(str(exc)) from None
        return results

    async def close(self) -> None:
        await self.inner.close()


class _BrokenConnection(Exception):
    """The connection broke before any answer arrived (see Upstream.request's retry)."""

    def __init__(self, error: UpstreamError) -> None:
        super().__init__(error.message)
        self.error = error


class Upstream:
    def __init__(
        self,
        *,
        max_per_host: int = 1024,
        policy: AddressPolicy | None = None,
        resolver: AbstractResolver | None = None,
    ) -> None:
        self._session: aiohttp.ClientSession | None = None
        # Long SSE streams hold a connection each: the cap must sit above the open streams one
        # process is expected to carry to one upstream.
        self.max_per_host = max_per_host
        self.policy = policy or AddressPolicy()
        self._resolver = resolver
        # Literal-address hosts never reach a resolver: their verdicts, by URL (bounded).
        self._literal_verdicts: dict[str, str | None] = {}

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0,
                limit_per_host=self.max_per_host,
                ttl_dns_cache=300,
                # Shorter than the idle timeout of common servers (uvicorn and Node: 5 s), so a
                # pooled connection is dropped here before the server closes it under a request.
                keepalive_timeout=4,
                enable_cleanup_closed=True,
                resolver=GuardedResolver(self.policy, self._resolver),
            )
            # No cookies, no auto decompression surprises: bytes pass through as sent.
            self._session = aiohttp.ClientSession(
                connector=connector, cookie_jar=aiohttp.DummyCookieJar(), auto_decompress=True
            )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: dict[str, str],
        body: bytes | None,
        connect_timeout_s: float,
        total_timeout_s: float,
        retry_safe: bool = False,
    ) -> UpstreamResponse:
        """Send one request; the response headers, and a JSON body with them, arrive within
        `total_timeout_s`.

        Long SSE streams are not cut by the total timeout: while streaming, a gap longer than it
        between chunks counts as a silent upstream. A `retry_safe` request (one that changes
        nothing upstream: a listing, a ping) is sent once more when the connection broke before
        any answer, which is what a pooled connection the server had just closed looks like.
        """
        attempts = 2 if retry_safe else 1
        for attempt in range(1, attempts + 1):
            try:
                return await self._request(
                    method, url, headers, body, connect_timeout_s, total_timeout_s
                )
            except _BrokenConnection as exc:
                if attempt == attempts:
                    raise exc.error from None
        raise AssertionError("unreachable")

    async def _request(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        body: bytes | None,
        connect_timeout_s: float,
        total_timeout_s: float,
    ) -> UpstreamResponse:
        if self._session is None:
            await self.start()
        assert self._session is not None
        refused = self._literal_refusal(url)
        if refused is not None:
            raise UpstreamError(jsonrpc.UPSTREAM_UNREACHABLE, refused)
        deadline = asyncio.get_running_loop().time() + total_timeout_s
        timeout = aiohttp.ClientTimeout(
            total=None,
            connect=connect_timeout_s,
            sock_connect=connect_timeout_s,
            sock_read=total_timeout_s,
        )
        try:
            response = await asyncio.wait_for(
                self._session.request(
                    method, url, headers=headers, data=body, timeout=timeout, allow_redirects=False
                ),
                timeout=total_timeout_s,
            )
        except aiohttp.ConnectionTimeoutError:
            raise UpstreamError(
                jsonrpc.UPSTREAM_TIMEOUT,
                f"The upstream server did not accept a connection within {connect_timeout_s:g} s.",
                status=504,
            ) from None
        except TimeoutError:
            raise UpstreamError(
                jsonrpc.UPSTREAM_TIMEOUT,
                f"The upstream server did not answer within {total_timeout_s:g} s.",
                status=504,
            ) from None
        except aiohttp.ClientConnectorDNSError as exc:
            if isinstance(exc.os_error, _RefusedAddress):
                raise UpstreamError(jsonrpc.UPSTREAM_UNREACHABLE, exc.os_error.reason) from None
            raise UpstreamError(
                jsonrpc.UPSTREAM_UNREACHABLE, "The upstream server's host name does not resolve."
            ) from None
        except aiohttp.ClientConnectorError:
            raise UpstreamError(
                jsonrpc.UPSTREAM_UNREACHABLE, "The upstream server is unreachable."
            ) from None
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError) as exc:
            raise _BrokenConnection(
                UpstreamError(
                    jsonrpc.UPSTREAM_UNREACHABLE,
                    f"The upstream request failed: {type(exc).__name__}.",
                )
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                jsonrpc.UPSTREAM_UNREACHABLE, f"The upstream request failed: {type(exc).__name__}."
            ) from None
        headers_out = {k.lower(): v for k, v in response.headers.items()}
        return UpstreamResponse(response.status, headers_out, response, total_timeout_s, deadline)

    def _literal_refusal(self, url: str) -> str | None:
        """The SSRF verdict on a URL whose host is an IP address (names go through the
        resolver); None when it may be connected to. Cached by URL: a server's URL rarely
        changes, and a dictionary hit costs less than parsing it on every call."""
        try:
            return self._literal_verdicts[url]
        except KeyError:
            verdict = self._judge_literal(URL(url).raw_host or "")
            if len(self._literal_verdicts) >= 4096:
                self._literal_verdicts.clear()
            self._literal_verdicts[url] = verdict
            return verdict

    def _judge_literal(self, host: str) -> str | None:
        try:
            ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            return None
        try:
            self.policy.check_addresses(host, [host.strip("[]")])
        except UnsafeUpstream as exc:
            return str(exc)
        return None
