"""Redis pub/sub transport of the hot state's subscriptions (base.Subscription drives it)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from .base import HotStateError
from .redis_common import _translated


class _RedisTransport:
    def __init__(self, client: aioredis.Redis, channels: list[str]) -> None:
        self._client = client
        self._channels = channels
        self._pubsub: Any = None
        self._early: list[tuple[str, bytes]] = []

    @_translated
    async def start(self) -> None:
        self._pubsub = pubsub = self._client.pubsub()
        try:
            await pubsub.subscribe(*self._channels)
            # SUBSCRIBE is only in effect once Redis confirms it; waiting here is what lets the
            # caller publish right after entering without losing the message.
            waiting = set(self._channels)
            async with asyncio.timeout(10):
                while waiting:
                    message = await pubsub.get_message(timeout=None)
                    if message is None:
                        continue
                    if message["type"] == "subscribe":
                        waiting.discard(message["channel"].decode())
                    elif message["type"] == "message":
                        self._early.append((message["channel"].decode(), message["data"]))
        except BaseException:
            await self.close()  # the caller never got a subscription to leave, so free it here
            raise

    @_translated
    async def receive(self) -> tuple[str, bytes]:
        if self._early:
            return self._early.pop(0)
        while True:
            pubsub = self._pubsub
            if pubsub is None:
                raise HotStateError("subscription closed")
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=None)
            if message is not None and message["type"] == "message":
                return message["channel"].decode(), message["data"]

    async def close(self) -> None:
        if self._pubsub is not None:
            # aclose drops the dedicated connection, which ends the subscription server-side.
            await self._pubsub.aclose()
            self._pubsub = None
