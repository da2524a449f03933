"""Run the audit writer: the only writer of the audit table (DESIGN.md section 1, auditwriter)."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

from asgiref.sync import sync_to_async
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from compliance.audit.writer import CLAIM_MIN_IDLE_MS, run_forever, run_once
from governance.gctune import tune_gc
from governance.runtime.hotstate import close_hotstate


async def _release() -> None:
    # The process-wide hot state belongs to this loop, which ends here; the database work ran
    # in asgiref's worker thread, whose connection would otherwise outlive the command.
    await close_hotstate()
    await sync_to_async(connections.close_all)()


class Command(BaseCommand):
    help = (
        "Move audit events from the outbox and the hot-state stream into the hash-chained audit "
        "table, then publish them to the live feed. Runs until SIGTERM/SIGINT, or once with --once."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--once", action="store_true", help="Drain what is pending now, then exit."
        )
        parser.add_argument("--batch", type=int, default=500, help="Events per transaction.")
        parser.add_argument(
            "--claim-idle-ms",
            type=int,
            default=CLAIM_MIN_IDLE_MS,
            help="Take over stream entries another consumer left unacknowledged this long.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        batch, claim_idle_ms = options["batch"], options["claim_idle_ms"]
        if batch < 1:
            raise CommandError("--batch must be at least 1")
        tune_gc()
        if options["once"]:
            outbox, stream = asyncio.run(self._once(batch, claim_idle_ms))
            self.stdout.write(f"stored {outbox} events from the outbox, {stream} from the stream")
            return
        asyncio.run(self._run(batch, claim_idle_ms))

    async def _once(self, batch: int, claim_idle_ms: int) -> tuple[int, int]:
        try:
            return await run_once(batch=batch, claim_min_idle_ms=claim_idle_ms)
        finally:
            await _release()

    async def _run(self, batch: int, claim_idle_ms: int) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            # Finish the batch in hand, then exit: nothing is acknowledged before it commits.
            loop.add_signal_handler(sig, stop.set)
        self.stdout.write("audit writer running (SIGTERM or Ctrl-C to stop)")
        try:
            await run_forever(stop, batch=batch, claim_min_idle_ms=claim_idle_ms)
        finally:
            await _release()
