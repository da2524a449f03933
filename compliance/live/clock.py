"""One connection's send timeout and heartbeat (`SendClock`), and the ASGI callables' types."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from typing import Any

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

TIMER_SLACK_S = 0.001  # libuv's timers tick in milliseconds: one may fire that much early


class SendClock:
    """One connection's send timeout and heartbeat, on one timer re-armed lazily.

    `asyncio.timeout` around every send and every wait armed and cancelled two timers per event
    per connection (a third of the fan-out's CPU). Here a send only notes when it started and
    ended; the timer, when it fires, works out from those notes whether a send is stuck (its
    task is cancelled and the send raises TimeoutError, as under `asyncio.timeout`), a
    heartbeat is due (nothing sent for `heartbeat_s`), or it is early and re-arms itself."""

    def __init__(self, heartbeat_s: float, timeout_s: float) -> None:
        self.heartbeat_s, self.timeout_s = heartbeat_s, timeout_s
        self._loop = asyncio.get_running_loop()
        self._on_idle: Callable[[], None] | None = None
        self._last_sent = self._loop.time()
        self._sending_since: float | None = None
        self._sender: asyncio.Task[Any] | None = None
        self._expired = False
        self._handle: asyncio.TimerHandle | None = None
        self._at = math.inf

    async def send(self, send: Send, message: dict[str, Any]) -> None:
        self._sending_since = self._loop.time()
        self._sender, self._expired = asyncio.current_task(), False
        self._arm(self._sending_since + self.timeout_s)  # a no-op when an earlier one is set
        try:
            await send(message)
        except asyncio.CancelledError:
            if self._expired and self._sender is not None and self._sender.uncancel() == 0:
                raise TimeoutError("the client did not take the stream's data in time") from None
            raise
        finally:
            self._sending_since = None
            self._last_sent = self._loop.time()
            if self._on_idle is not None:
                self._arm(self._last_sent + self.heartbeat_s)  # after a long send, if needed

    def heartbeats(self, on_idle: Callable[[], None]) -> None:
        """Call `on_idle` whenever nothing was sent for `heartbeat_s`, until `stop`."""
        self._on_idle = on_idle
        self._arm(self._last_sent + self.heartbeat_s)

    def stop(self) -> None:
        self._on_idle = None
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._at = None, math.inf

    def _arm(self, at: float) -> None:
        if at >= self._at:
            return
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._at = self._loop.call_at(at, self._fire), at

    def _fire(self) -> None:
        self._handle, self._at = None, math.inf
        now = self._loop.time() + TIMER_SLACK_S
        if self._sending_since is not None:
            due = self._sending_since + self.timeout_s
            if now < due:
                self._arm(due)
            elif self._sender is not None and not self._sender.done():
                self._expired = True
                self._sender.cancel()
            return
        if self._on_idle is None:
            return
        due = self._last_sent + self.heartbeat_s
        if now < due:
            self._arm(due)
            return
        self._on_idle()
        self._arm(self._loop.time() + self.heartbeat_s)
