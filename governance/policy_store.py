"""Build an organisation's policy snapshot from its newest published version.

The proxy keeps the result per process and swaps it when a publish is announced. The snapshot is
`governance.policy.PolicySnapshot`, the one compiled-policy class that the proxy, the console's
dry run, the API's simulation and replay, the tests and `make bench` all decide through.
"""

from __future__ import annotations

import uuid

from governance.policy import PolicySnapshot


def snapshot_for_org(org_id: str) -> PolicySnapshot:
    from governance.models import Organization, PolicyVersion

    # The posture is the organisation's current setting (changing it is announced like a publish);
    # each version also records the posture it was published under, for history.
    posture = (
        Organization.objects.filter(pk=uuid.UUID(str(org_id)))
        .values_list("default_posture", flat=True)
        .first()
        or "deny"
    )
    latest = PolicyVersion.objects.filter(org_id=uuid.UUID(str(org_id))).order_by("-number").first()
    return PolicySnapshot.from_documents(
        org_id=str(org_id),
        version=latest.number if latest is not None else None,
        posture=posture,
        documents=latest.rules if latest is not None else [],
    )
