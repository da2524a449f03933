"""Background tasks every web process runs: cache invalidation listeners, and in the embedded
default (no Redis) the audit writer, so `make run` needs a single process."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from django.conf import settings

log = logging.getLogger("igris.background")


async def _listen_for_key_changes() -> None:
    from governance.keys import KEY_FLAG_PREFIX, get_verifier
    from governance.runtime.flag_listener import follow_flags
    from governance.runtime.hotstate import get_hotstate

    # The verifier is looked up on each change, not kept: keys.reset() may replace it.
    def on_flag(key: str, _value: str | None) -> None:
        if key.startswith(KEY_FLAG_PREFIX):
            get_verifier().invalidate(key[len(KEY_FLAG_PREFIX) :])

    await follow_flags(
        get_hotstate,
        on_flag,
        on_break=lambda: get_verifier().invalidate(),
        name="key flag listener",
        log=log,
    )


async def start_background() -> list[asyncio.Task[Any]]:
    from governance.runtime.hotstate.sync import register_loop

    register_loop(asyncio.get_running_loop())
    tasks = [asyncio.create_task(_listen_for_key_changes(), name="igris-key-listener")]
    if settings.IGRIS_EMBEDDED_AUDIT_WRITER:
        try:
            from compliance.audit.writer import run_forever
        except ImportError:
            run_forever = None
        if run_forever is not None:
            tasks.append(asyncio.create_task(run_forever(), name="igris-audit-writer"))
    return tasks
