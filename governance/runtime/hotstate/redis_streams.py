"""Redis streams of the hot state: XADD, consumer groups (XREADGROUP, XACK, XAUTOCLAIM), reads.

The stream half of `RedisHotState`, kept in a module of its own by domain; it uses the client
that `RedisHotState.__init__` builds and the key scheme of `HotState`.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ResponseError

from .base import HotState, StreamEntry, StreamFields
from .redis_common import _text, _translated

# A blocking XREADGROUP longer than redis-py's socket timeout (5 s by default) would be cut off
# as a timeout, so long waits are made of shorter blocking reads.
BLOCK_CHUNK_MS = 2000


def _payload(fields: StreamFields) -> dict[Any, Any]:
    return dict(fields)  # redis-py's stubs want a dict keyed by any encodable type


def _entries(raw: Any) -> list[StreamEntry]:
    """(id, {field: value}) pairs from redis-py's stream replies, decoding ids and field names."""
    return [
        (entry_id.decode(), {k.decode(): v for k, v in fields.items()})
        for entry_id, fields in raw or ()
        if fields is not None
    ]


class _RedisStreams(HotState):
    """The stream operations of `RedisHotState`, which inherits them."""

    redis: aioredis.Redis

    @_translated
    async def stream_append(
        self, stream: str, fields: StreamFields, *, maxlen: int | None = None
    ) -> str:
        # Exact MAXLEN (not "~") so both backends keep the same entries.
        entry_id = await self.redis.xadd(
            self._key("stream", stream), _payload(fields), maxlen=maxlen, approximate=False
        )
        return _text(entry_id)

    @_translated
    async def stream_append_many(
        self, stream: str, entries: Sequence[StreamFields], *, maxlen: int | None = None
    ) -> list[str]:
        if not entries:
            return []
        full = self._key("stream", stream)
        # MULTI makes the batch all-or-nothing: a batch of audit events is durable as a whole.
        async with self.redis.pipeline(transaction=True) as pipe:
            for fields in entries:
                pipe.xadd(full, _payload(fields), maxlen=maxlen, approximate=False)
            ids = await pipe.execute()
        return [_text(entry_id) for entry_id in ids]

    @_translated
    async def stream_ensure_group(self, stream: str, group: str, *, start_id: str = "0") -> None:
        try:
            await self.redis.xgroup_create(
                self._key("stream", stream), group, id=start_id, mkstream=True
            )
        except ResponseError as exc:
            if not str(exc).startswith("BUSYGROUP"):
                raise

    @_translated
    async def stream_read_group(
        self,
        stream: str,
        group: str,
        consumer: str,
        *,
        count: int = 100,
        block_ms: int | None = None,
    ) -> list[StreamEntry]:
        full = self._key("stream", stream)
        loop = asyncio.get_running_loop()
        deadline = None if not block_ms else loop.time() + block_ms / 1000
        while True:
            block = None
            if block_ms is not None:
                left = BLOCK_CHUNK_MS if deadline is None else (deadline - loop.time()) * 1000
                block = max(1, min(BLOCK_CHUNK_MS, math.ceil(left)))
            raw = await self.redis.xreadgroup(
                group, consumer, {full: ">"}, count=count, block=block
            )
            # RESP2 gives [[stream, entries]], RESP3 {stream: entries}; one stream either way.
            replies = list(raw.values()) if isinstance(raw, dict) else [r[1] for r in raw or ()]
            entries = _entries(replies[0]) if replies else []
            if entries or block is None:
                return entries
            if deadline is not None and loop.time() >= deadline:
                return []

    @_translated
    async def stream_ack(self, stream: str, group: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(await self.redis.xack(self._key("stream", stream), group, *ids))

    @_translated
    async def stream_delete(self, stream: str, ids: Sequence[str]) -> int:
        if not ids:
            return 0
        return int(await self.redis.xdel(self._key("stream", stream), *ids))

    @_translated
    async def stream_ack_delete(self, stream: str, group: str, ids: Sequence[str]) -> None:
        if not ids:
            return
        full = self._key("stream", stream)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.xack(full, group, *ids)
            pipe.xdel(full, *ids)
            await pipe.execute()

    @_translated
    async def stream_pending_claim(
        self, stream: str, group: str, consumer: str, *, min_idle_ms: int, count: int = 100
    ) -> list[StreamEntry]:
        # XAUTOCLAIM (Redis 6.2+): the way a restarted audit writer takes over what a dead
        # consumer read but never acknowledged.
        reply = await self.redis.xautoclaim(
            self._key("stream", stream), group, consumer, min_idle_ms, start_id="0-0", count=count
        )
        return _entries(reply[1])

    @_translated
    async def stream_len(self, stream: str) -> int:
        return int(await self.redis.xlen(self._key("stream", stream)))

    @_translated
    async def stream_range(
        self, stream: str, start: str = "-", end: str = "+", count: int | None = None
    ) -> list[StreamEntry]:
        return _entries(await self.redis.xrange(self._key("stream", stream), start, end, count))
