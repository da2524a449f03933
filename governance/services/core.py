"""State changes of the governance core, re-exported from their domain modules.

The services live beside this module, one module per domain: `organizations`, `members`
(members and invitations), `api_keys` and `servers`; `ServiceError` and the shared role check
and validation helpers live in `base`. This module keeps the names importable from
`governance.services.core`, where the other service modules and the API import them from.
"""

from __future__ import annotations

from governance.services import api_keys, members, organizations, servers
from governance.services.api_keys import *  # noqa: F403

# `_check` and `_clean` stay importable from here: the sibling service modules and the package
# `__init__` import them from this module.
from governance.services.base import ServiceError, _check, _clean  # noqa: F401
from governance.services.members import *  # noqa: F403
from governance.services.organizations import *  # noqa: F403
from governance.services.servers import *  # noqa: F403

__all__ = [
    "ServiceError",
    *api_keys.__all__,
    *members.__all__,
    *organizations.__all__,
    *servers.__all__,
]
