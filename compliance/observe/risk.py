"""The heat map's risk score: one documented formula, shown on the page. Pure: no database.

    score = 3 x denials + 4 x anomalies + 5 x drift + 2 x destructive calls + 1 x errors

Why these weights: a tool whose description or schema changed under the agents (drift) is the
strongest sign of a compromised or swapped server, and the detectors' other anomalies (rate
spikes, destructive patterns, alert rules) are findings someone should look at; a denial is an
agent trying what policy forbids; a destructive call is irreversible even when allowed; an error
is mostly noise but a burst of them is worth seeing. Counts, not rates: a busy cell with one
denial in ten thousand calls scores the same as a quiet one with one denial, because each is one
thing to review.

The colour is the score's level (1-4) relative to the highest cell on the map; the score itself
is printed in the cell and levels 3 and 4 add a hatch pattern, so colour is never the only signal.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WEIGHTS: dict[str, int] = {
    "denials": 3,
    "anomalies": 4,
    "drift": 5,
    "destructive": 2,
    "errors": 1,
}
LEVELS = 4
FORMULA = " + ".join(f"{w} \N{MULTIPLICATION SIGN} {name}" for name, w in WEIGHTS.items())


@dataclass(slots=True)
class Cell:
    calls: int = 0
    denials: int = 0
    anomalies: int = 0
    drift: int = 0
    destructive: int = 0
    errors: int = 0

    @property
    def score(self) -> int:
        return sum(getattr(self, name) * weight for name, weight in WEIGHTS.items())


def level(score: int, highest: int) -> int:
    """0 for a cell with nothing to review, else 1..LEVELS in proportion to the map's highest."""
    if score <= 0 or highest <= 0:
        return 0
    return max(1, min(LEVELS, math.ceil(LEVELS * score / highest)))
