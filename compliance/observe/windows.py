"""The dashboard's windows: which rollup a window reads, its time buckets, and where it starts and
ends. Pure: no database.

A window is a whole number of buckets ending with the bucket that holds `now` (the current,
partial one included): "15 min" is the fifteen minute buckets up to and including this minute.
Counters, series and the heat map all cover exactly [start, end), so the numbers on one page add
up with each other and with the audit rows their links select.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

Grain = Literal["minute", "hour"]


@dataclass(frozen=True, slots=True)
class WindowSpec:
    key: str
    label: str
    grain: Grain  # which rollup: CallMinute or CallHour
    step: timedelta  # one column of the series and of the heat map
    steps: int


WINDOWS: dict[str, WindowSpec] = {
    spec.key: spec
    for spec in (
        WindowSpec("15m", "15 min", "minute", timedelta(minutes=1), 15),
        WindowSpec("1h", "1 h", "minute", timedelta(minutes=5), 12),
        WindowSpec("24h", "24 h", "hour", timedelta(hours=2), 12),
        WindowSpec("7d", "7 d", "hour", timedelta(hours=12), 14),
    )
}
DEFAULT_WINDOW = "1h"
_EPOCH = datetime(2000, 1, 1, tzinfo=UTC)  # a Saturday 00:00 UTC: steps align to it


class BadWindow(ValueError):
    """A window the dashboard does not offer."""


@dataclass(frozen=True, slots=True)
class Window:
    spec: WindowSpec
    start: datetime
    end: datetime

    @property
    def buckets(self) -> list[datetime]:
        return [self.start + i * self.spec.step for i in range(self.spec.steps)]

    def bucket_index(self, moment: datetime) -> int | None:
        if not self.start <= moment < self.end:
            return None
        return int((moment - self.start) // self.spec.step)


def window_for(key: str, now: datetime) -> Window:
    """The window `key` ending with the bucket that holds `now` (aware)."""
    if now.tzinfo is None:
        raise ValueError("now must be an aware datetime")
    spec = WINDOWS.get(key)
    if spec is None:
        raise BadWindow(f"window must be one of {', '.join(WINDOWS)}; got {key[:20]!r}")
    now = now.astimezone(UTC)
    current = _EPOCH + ((now - _EPOCH) // spec.step) * spec.step
    end = current + spec.step
    return Window(spec, end - spec.steps * spec.step, end)
