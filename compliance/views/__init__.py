"""Console pages over the audit store (they read `AuditEvent`, so they live in compliance)."""
