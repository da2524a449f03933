"""Small ASGI helpers for the proxy (no framework on the hot path)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from proxy import jsonrpc

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

JSON = b"application/json"
SSE = b"text/event-stream"


class BodyTooLarge(Exception):
    pass


class BodyTimeout(Exception):
    pass


class ClientGone(Exception):
    pass


def header_map(scope: Scope) -> dict[str, str]:
    out: dict[str, str] = {}
    for name, value in scope.get("headers", []):
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        out[key] = f"{out[key]}, {text}" if key in out else text
    return out


async def read_body(receive: Receive, limit: int, timeout_s: float) -> bytes:
    """The whole request body, within `limit` bytes and `timeout_s` seconds in total.

    The deadline covers the body as a whole, not each chunk: a slowloris client trickling a byte
    a second would never trip a per-chunk idle timeout, yet holds a task and a connection.
    """
    chunks: list[bytes] = []
    size = 0
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise ClientGone()
                body = message.get("body", b"")
                size += len(body)
                if size > limit:
                    raise BodyTooLarge()
                chunks.append(body)
                if not message.get("more_body", False):
                    return b"".join(chunks)
    except TimeoutError:
        raise BodyTimeout() from None


async def send_bytes(
    send: Send,
    status: int,
    body: bytes,
    *,
    content_type: bytes | None = JSON,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    out = list(headers or [])
    if content_type is not None:
        out.append((b"content-type", content_type))
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": body})


async def send_rpc_error(
    send: Send,
    status: int,
    code: int,
    message: str,
    *,
    id: Any = None,
    data: Any = None,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    await send_bytes(
        send,
        status,
        jsonrpc.dumps(jsonrpc.error_response(id, code, message, data)),
        headers=headers,
    )
