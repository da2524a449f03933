"""The destructive tool-name pattern, one copy for every detector that looks for it.

The proxy's anomaly detector (proxy/anomalies.py) and ingestion from other gateways
(compliance/ingest/services.py) both record a `destructive_pattern` anomaly when a tool's name
announces an irreversible action. It lives in the governance core, below both, so they match the
same names. Pure: no Django.
"""

from __future__ import annotations

import re

# Tool names that announce an irreversible action: delete_*, drop-*, truncate.*, destroy, purge_*.
DESTRUCTIVE_TOOL_NAME = re.compile(
    r"^(delete|drop|truncate|destroy|purge)([_\-.]|$)", re.IGNORECASE
)


def is_destructive_name(name: object) -> bool:
    """Whether a tool name matches the destructive pattern (anomaly input, never a verdict)."""
    return isinstance(name, str) and DESTRUCTIVE_TOOL_NAME.match(name) is not None
