"""State changes of the governance core (one service per change; see CONVENTIONS.md)."""

from __future__ import annotations

from governance.services.console_extra import *  # noqa: F403
from governance.services.core import *  # noqa: F403
from governance.services.core import ServiceError, _check, _clean  # noqa: F401
from governance.services.ingest_sources import *  # noqa: F403
from governance.services.policies import *  # noqa: F403
from governance.services.sessions import *  # noqa: F403
from governance.services.tools import *  # noqa: F403
