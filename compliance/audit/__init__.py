"""The tamper-evident audit log: canonical encoding and chaining (`chain`), the single writer
(`writer`) and the verifier (`verify`). DESIGN.md sections 1 and 7; compliance-and-billing.md 4."""
