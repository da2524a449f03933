"""The server-rendered console: one module per area, sharing `base` (guard, layout, errors).

The URLconf (`governance/urls.py`) imports each view from its module; this package re-exports
nothing, so each view has one import path.
"""
