"""The one outbound seam of the hot path: a long-lived, pooled aiohttp client.

aiohttp, not httpx, because it is several times faster under concurrency on 2 cores
(reference/performance.md §3); keep that choice inside this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp

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

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    async def read(self, limit: int) -> bytes:
        """Read a whole (JSON) body, refusing more than `limit` bytes."""
        chunks: list[bytes] = []
        size = 0
        try:
            async for chunk in self._response.content.iter_chunked(65536):
                size += len(chunk)
                if size > limit:
                    raise UpstreamError(
                        jsonrpc.UPSTREAM_PROTOCOL, f"The upstream response exceeded {limit} bytes."
                    )
                chunks.append(chunk)
        except TimeoutError:
            raise UpstreamError(
                jsonrpc.UPSTREAM_TIMEOUT, "The upstream server timed out.", status=504
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                jsonrpc.UPSTREAM_UNREACHABLE,
                f"The upstream connection failed: {type(exc).__name__}.",
            ) from None
        return b"".join(chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except TimeoutError:
            raise UpstreamError(
                jsonrpc.UPSTREAM_TIMEOUT, "The upstream stream went silent.", status=504
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                jsonrpc.UPSTREAM_UNREACHABLE, f"The upstream stream broke: {type(exc).__name__}."
            ) from None

    def close(self) -> None:
        self._response.close()

    def release(self) -> None:
        self._response.release()


class Upstream:
    def __init__(self) -> None:
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        if self._session is None:
            connector = aiohttp.TCPConnector(
                limit=0,
                limit_per_host=256,
                ttl_dns_cache=300,
                keepalive_timeout=30,
                enable_cleanup_closed=True,
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
    ) -> UpstreamResponse:
        """Send one request; the response headers arrive within `total_timeout_s`.

        Long SSE streams are not cut by the total timeout: while streaming, a gap longer than it
        between chunks counts as a silent upstream.
        """
        if self._session is None:
            await self.start()
        assert self._session is not None
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
        except TimeoutError:
            raise UpstreamError(
                jsonrpc.UPSTREAM_TIMEOUT,
                f"The upstream server did not answer within {total_timeout_s:g} s.",
                status=504,
            ) from None
        except aiohttp.ClientConnectorError:
            raise UpstreamError(
                jsonrpc.UPSTREAM_UNREACHABLE, "The upstream server is unreachable."
            ) from None
        except aiohttp.ClientError as exc:
            raise UpstreamError(
                jsonrpc.UPSTREAM_UNREACHABLE, f"The upstream request failed: {type(exc).__name__}."
            ) from None
        headers_out = {k.lower(): v for k, v in response.headers.items()}
        return UpstreamResponse(response.status, headers_out, response, total_timeout_s)
