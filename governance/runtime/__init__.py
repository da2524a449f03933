"""The governance core's runtime state: what the running processes share outside the database.

`hotstate` is the one interface to it (Redis or in-process memory, DESIGN.md section 4), `flags`
names the kill and circuit flags kept there, and `standing` restores the stops when the hot
state has lost them. The policy engine may not import any of it (pyproject.toml).
"""
