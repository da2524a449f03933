"""Policies: edit a draft, publish immutable numbered versions, roll back.

Every publish is an audit event carrying the diff, and is announced so every proxy process swaps
its compiled snapshot within a second.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from governance.events import actor_for_user, emit
from governance.models import Organization, PolicyDraft, PolicyVersion, User
from governance.permissions import Action
from governance.policy.rules import PolicyValidationError, validate_rules
from governance.services.base import ServiceError, _check

__all__ = [
    "PolicyRulesInvalid",
    "policy_diff",
    "policy_draft_update",
    "policy_publish",
    "policy_rollback",
]


class PolicyRulesInvalid(ServiceError):
    def __init__(self, errors: list[dict[str, Any]]) -> None:
        first = errors[0]
        where = "rules" if first["index"] is None else f"rule {first['index']}"
        super().__init__(
            f"{where}: {first['field']}: {first['message']}", field="rules", code="invalid_rules"
        )
        self.errors = errors


def _validated(rules: Any) -> list[dict[str, Any]]:
    cap = settings.IGRIS_POLICY_MAX_RULES
    if isinstance(rules, list) and len(rules) > cap:
        # Counted before each rule is checked: the cap also bounds that work.
        message = f"has {len(rules)} rules; a policy holds at most {cap}"
        raise PolicyRulesInvalid([{"index": None, "field": "rules", "message": message}])
    try:
        validate_rules(rules)
    except PolicyValidationError as exc:
        raise PolicyRulesInvalid([dict(e) for e in exc.errors]) from None
    return list(rules)


def policy_diff(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[str, Any]:
    """Rules added, removed, changed (by id) and whether the order changed."""
    old_by_id = {r.get("id"): r for r in old}
    new_by_id = {r.get("id"): r for r in new}
    canon = lambda r: json.dumps(r, sort_keys=True)  # noqa: E731
    return {
        "added": [i for i in new_by_id if i not in old_by_id],
        "removed": [i for i in old_by_id if i not in new_by_id],
        "changed": [
            i for i in new_by_id if i in old_by_id and canon(new_by_id[i]) != canon(old_by_id[i])
        ],
        "reordered": [r.get("id") for r in old if r.get("id") in new_by_id]
        != [r.get("id") for r in new if r.get("id") in old_by_id],
    }


@transaction.atomic
def policy_draft_update(*, org: Organization, actor: User, rules: Any) -> PolicyDraft:
    _check(org, actor, Action.POLICIES_MANAGE)
    rules = _validated(rules)
    draft, _ = PolicyDraft.objects.select_for_update().get_or_create(org=org)
    draft.rules = rules
    draft.updated_by = actor
    draft.updated_at = timezone.now()
    draft.save()
    emit(
        org_id=org.id,
        type="policy.draft_updated",
        actor=actor_for_user(actor),
        data={"rules": len(rules)},
    )
    return draft


def _latest(org: Organization) -> PolicyVersion | None:
    return PolicyVersion.objects.filter(org=org).order_by("-number").first()


def _new_version(
    org: Organization,
    actor: User,
    rules: list[dict[str, Any]],
    note: str,
    rolled_back_from: int | None,
) -> PolicyVersion:
    # Lock the organisation row so two publishes cannot take the same number.
    Organization.objects.select_for_update().get(pk=org.pk)
    previous = _latest(org)
    number = (PolicyVersion.objects.filter(org=org).aggregate(n=Max("number"))["n"] or 0) + 1
    version = PolicyVersion.objects.create(
        org=org,
        number=number,
        rules=rules,
        posture=org.default_posture,
        note=(note or "")[:300],
        rolled_back_from=rolled_back_from,
        published_by=actor,
    )
    diff = policy_diff(previous.rules if previous else [], rules)
    emit(
        org_id=org.id,
        type="policy.published",
        actor=actor_for_user(actor),
        data={
            "version": number,
            "previous": previous.number if previous else None,
            "diff": diff,
            "rolled_back_from": rolled_back_from,
            "posture": org.default_posture,
            "rules": len(rules),
        },
    )
    from governance.runtime.flags import policy_changed
    from governance.runtime.hotstate.sync import publish_flag_sync

    transaction.on_commit(
        lambda: publish_flag_sync(policy_changed(org.id), str(number), ttl_s=3600)
    )
    return version


@transaction.atomic
def policy_publish(*, org: Organization, actor: User, note: str = "") -> PolicyVersion:
    _check(org, actor, Action.POLICIES_MANAGE)
    draft = PolicyDraft.objects.filter(org=org).first()
    if draft is None:
        raise ServiceError("There is no draft to publish.", code="no_draft")
    rules = _validated(draft.rules)
    version = _new_version(org, actor, rules, note, None)
    draft.base_version = version.number
    draft.save(update_fields=["base_version"])
    return version


@transaction.atomic
def policy_rollback(
    *, org: Organization, actor: User, number: int, note: str = ""
) -> PolicyVersion:
    """Publish a new version whose rules are those of version `number`; the draft follows."""
    _check(org, actor, Action.POLICIES_MANAGE)
    old = PolicyVersion.objects.filter(org=org, number=number).first()
    if old is None:
        raise ServiceError(f"There is no version {number} to roll back to.", code="not_found")
    # The note is the operator's own words only: the rollback itself is recorded in
    # rolled_back_from, and the console says it once (PolicyVersion.rollback_summary).
    version = _new_version(org, actor, _validated(old.rules), note, number)
    PolicyDraft.objects.update_or_create(
        org=org,
        defaults={
            "rules": old.rules,
            "base_version": version.number,
            "updated_by": actor,
            "updated_at": timezone.now(),
        },
    )
    return version
