"""What every part of the Redis hot state shares: redis-py errors turned backend-neutral."""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine
from typing import Any, ParamSpec, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .base import HotStateUnavailable, NoSuchGroupError

P = ParamSpec("P")
R = TypeVar("R")


def _translated(
    fn: Callable[P, Coroutine[Any, Any, R]],
) -> Callable[P, Coroutine[Any, Any, R]]:
    """Turn redis-py errors into the backend-neutral ones callers handle (fail closed)."""

    @functools.wraps(fn)
    async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(*args, **kwargs)
        except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
            raise HotStateUnavailable(str(exc)) from exc
        except ResponseError as exc:
            if str(exc).startswith("NOGROUP"):
                raise NoSuchGroupError(str(exc)) from exc
            raise

    return wrapper


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
