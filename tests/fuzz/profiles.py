"""Hypothesis profiles of the fuzz tests.

`fuzz` (the default) keeps every file of this package under half a minute on two cores;
`fuzz-long` is for a deliberate hunt: `IGRIS_FUZZ_PROFILE=fuzz-long pytest tests/fuzz`.
The profiles are applied per test (`@FUZZ`), never loaded globally, so the rest of the suite
keeps its own settings.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

settings.register_profile(
    "fuzz",
    deadline=None,
    max_examples=60,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)
settings.register_profile("fuzz-long", settings.get_profile("fuzz"), max_examples=2000)

FUZZ = settings.get_profile(os.environ.get("IGRIS_FUZZ_PROFILE", "fuzz"))


def scaled(n: int) -> settings:
    """The active profile with `n` examples in `fuzz`, as many times more as the profile has
    (for tests that cost a request or a database transaction per example)."""
    return settings(FUZZ, max_examples=max(1, n * FUZZ.max_examples // 60))
