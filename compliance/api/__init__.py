"""REST API v1 over the audit store, one module per resource: `events` (cursor list and streamed
export), `chain` (verification), `sessions` (a session's detail with its recent calls) and
`replay` (policy replay); `urls` routes them.

These live in compliance because they read `AuditEvent`; governance never imports compliance
(import-linter layers). The views reuse the governance API's machinery (errors, permissions,
pagination, throttling).
"""
