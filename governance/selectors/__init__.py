"""Tenant-scoped reads, one module per domain, used by the console and the REST API alike.

Another organisation's object is a 404, never a leak; a list selector does its own
`select_related` so pages and endpoints keep their pinned query counts. A read that is not scoped
to an organisation is named `unscoped_...`. This package re-exports nothing: import a selector
from its module.
"""
