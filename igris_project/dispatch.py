"""The path dispatcher of DESIGN.md §2, the lifespan of background tasks and /healthz."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import weakref
from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

log = logging.getLogger("igris.asgi")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]


def _db_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
        return True
    except Exception:
        log.exception("health check: database unavailable")
        return False
    finally:
        connection.close()


async def health_report() -> tuple[int, dict[str, Any]]:
    from governance.runtime.hotstate import get_hotstate

    db = await sync_to_async(_db_ok, thread_sensitive=False)()
    try:
        hot = await asyncio.wait_for(get_hotstate().ping(), timeout=2.0)
    except Exception:
        log.exception("health check: hot state unavailable")
        hot = False
    backend = "redis" if settings.REDIS_URL else "memory"
    body = {
        "status": "ok" if db and hot else "unavailable",
        "checks": {
            "database": {"ok": db, "vendor": connection.vendor},
            "hotstate": {"ok": hot, "backend": backend},
        },
    }
    return (200 if db and hot else 503), body


async def send_json(
    send: Send, status: int, body: Any, headers: list[tuple[bytes, bytes]] | None = None
) -> None:
    payload = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
                (b"cache-control", b"no-store"),
                *(headers or []),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})


class Dispatcher:
    """Routes the hot paths by path and hands the rest to Channels' router; owns one proxy per
    event loop.

    The proxy's clients (the pooled upstream session, the hot state) and its background tasks
    belong to the loop that runs them. A production process serves from one loop, so it has one
    proxy; a process that serves from several (test servers in threads beside the test's own
    loop) gets one per loop instead of sharing loop-bound clients between them."""

    def __init__(self, router: Any) -> None:
        self.router = router  # Channels' ProtocolTypeRouter: the live feed's consumers, Django
        self._proxies: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = (
            weakref.WeakKeyDictionary()
        )
        # The last loop served and its proxy: one identity check per request on the hot path.
        self._last: tuple[asyncio.AbstractEventLoop | None, Any] = (None, None)
        self._background: dict[asyncio.AbstractEventLoop, list[asyncio.Task[Any]]] = {}

    @property
    def proxy(self) -> Any:
        """The running loop's proxy, built on first use."""
        loop = asyncio.get_running_loop()
        last_loop, last = self._last
        if loop is last_loop:
            return last
        proxy = self._proxies.get(loop)
        if proxy is None:
            from proxy.app import build_proxy_app

            proxy = self._proxies[loop] = build_proxy_app()
        self._last = (loop, proxy)
        return proxy

    def proxies(self) -> list[Any]:
        """Every live proxy of this process, one per loop that served it (tests inspect them)."""
        return [proxy for loop, proxy in self._proxies.items() if not loop.is_closed()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind == "http":
            path: str = scope["path"]
            if path.startswith("/proxy/"):
                await self.proxy(scope, receive, send)
                return
            if path.startswith("/.well-known/oauth-protected-resource"):
                from proxy.wellknown import protected_resource_metadata

                await protected_resource_metadata(scope, receive, send)
                return
            if path == "/healthz":
                status, body = await health_report()
                await send_json(send, status, body)
                return
        await self.router(scope, receive, send)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self._startup()
                except Exception as exc:
                    log.exception("startup failed")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self._shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    async def _startup(self) -> None:
        from governance.gctune import tune_gc
        from igris_project.background import start_background

        tune_gc()  # everything imported by now stays out of the collector's way

        loop = asyncio.get_running_loop()
        self._background[loop] = await start_background()
        await self.proxy.startup()

    async def _shutdown(self) -> None:
        loop = asyncio.get_running_loop()
        proxy = self._proxies.pop(loop, None)
        if self._last[0] is loop:
            self._last = (None, None)
        if proxy is not None:
            await proxy.shutdown()
        background = self._background.pop(loop, [])
        for task in background:
            task.cancel()
        for task in background:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        from governance.runtime.hotstate import close_hotstate

        await close_hotstate()
