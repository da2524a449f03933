"""The observe dashboard's data: per-minute and per-hour call rollups the audit writer keeps in
the transaction that stores the events (rollups.py), and the reads the /observe/ page makes
(selectors.py), so the dashboard never scans the audit table per request."""
