"""State changes of the governance core, one module per domain (see CONVENTIONS.md).

Import a service from its module (`governance.services.servers.server_create`): this package
re-exports nothing, so each name has one import path. `base` holds `ServiceError` and the role
check and validation every service shares.
"""
