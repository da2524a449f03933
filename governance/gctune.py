"""Collector settings for igris' long-running processes: web workers and the audit writer.

Each proxied call or audit event allocates a few dozen short-lived containers. With CPython's
defaults the young generation is collected every 700 allocations, and every so often the older
generations too, walking everything startup left behind (Django, the apps, the SDKs): on the
bench machine that made parsing a 1 KB audit envelope cost 13 us instead of 5. Here the objects
alive after startup are frozen out of the collector's sight and the young generation is
collected every IGRIS_GC_YOUNG_THRESHOLD allocations (0 keeps CPython's defaults). Cycles are
still collected, in larger steps.
"""

from __future__ import annotations

import gc

from django.conf import settings


def tune_gc() -> None:
    threshold = int(settings.IGRIS_GC_YOUNG_THRESHOLD)
    if threshold <= 0:
        return
    gc.collect()
    gc.freeze()
    gc.set_threshold(threshold, 20, 100)
