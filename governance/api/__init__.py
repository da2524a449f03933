"""REST API v1 (`/api/v1/`): thin views over the governance services and selectors.

Shared machinery: problem+json errors (`errors`), keyset pagination (`pagination`), the role
table and key scopes as DRF permissions (`permissions`), per-key throttling (`throttling`),
Idempotency-Key replay (`idempotency`) and the OpenAPI schema tweaks (`schema`).
"""
