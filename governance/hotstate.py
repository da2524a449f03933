"""The old import path of the hot state, kept only for two modules that are being rewritten.

The hot state lives in `governance.runtime.hotstate`. `igris_project/dispatch.py` and
`compliance/live/fanout.py` still import `get_hotstate` and `close_hotstate` from here; they are
being moved onto Channels consumers in a parallel change, and editing them here would collide
with it. Delete this module once both import from `governance.runtime.hotstate`.
"""

from __future__ import annotations

from governance.runtime.hotstate import close_hotstate, get_hotstate

__all__ = ["close_hotstate", "get_hotstate"]
