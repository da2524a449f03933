"""Policies: the draft (read, replace), publish, versions, diffs, rollback, and a dry run
(`simulate`) that explains which rule decides a call and why each earlier one did not."""

from __future__ import annotations

from typing import Any

from django.utils import timezone
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from governance.api.base import ApiView
from governance.api.errors import ApiProblem, invalid
from governance.api.idempotency import idempotent
from governance.api.pagination import KeysetPaginator, PageQuery, page_of
from governance.api.permissions import Access
from governance.api.serializers import (
    PolicyDraftSerializer,
    PolicyDraftUpdateSerializer,
    PolicyPublishSerializer,
    PolicySimulateSerializer,
    PolicyVersionDiffSerializer,
    PolicyVersionSerializer,
    PolicyVersionSummarySerializer,
    SimulationSerializer,
)
from governance.models import Organization, PolicyVersion
from governance.permissions import Action
from governance.policy import (
    CallContext,
    PolicySnapshot,
    PolicyValidationError,
)
from governance.selectors.policies import (
    policy_draft_for_org,
    policy_latest_for_org,
    policy_version_get_for_org,
    policy_versions_for_org,
)
from governance.services.policies import (
    policy_diff,
    policy_draft_update,
    policy_publish,
    policy_rollback,
)

DRAFT = "draft"


def rules_of(org: Organization, ref: Any) -> tuple[list[Any], int | None, str]:
    """(rule documents, version number or None, label) of the draft or a published version."""
    if ref == DRAFT:
        draft = policy_draft_for_org(org=org)
        return (list(draft.rules) if draft else []), None, DRAFT
    version = PolicyVersion.objects.filter(org=org, number=ref).first()
    if version is None:
        raise invalid("version", f"There is no policy version {ref}.", "not_found")
    return list(version.rules), version.number, f"version {version.number}"


def compiled_policy(org: Organization, ref: Any) -> tuple[PolicySnapshot, list[Any], str]:
    """The chosen rule list as the organisation's policy snapshot (the class the proxy decides
    with), under the organisation's current posture."""
    documents, number, label = rules_of(org, ref)
    try:
        snapshot = PolicySnapshot.from_documents(
            org_id=str(org.id), version=number, posture=org.default_posture, documents=documents
        )
    except PolicyValidationError as exc:  # stored rules were validated when saved
        raise ApiProblem(
            409, "invalid_stored_rules", f"The {label} does not validate: {exc}"
        ) from None
    return snapshot, documents, label


def _draft_body(org: Organization) -> dict[str, Any]:
    draft = policy_draft_for_org(org=org)
    latest = policy_latest_for_org(org=org)
    rules = list(draft.rules) if draft else []
    return {
        "rules": rules,
        "base_version": draft.base_version if draft else None,
        "latest_version": latest.number if latest else None,
        "changes_from_latest": policy_diff(latest.rules if latest else [], rules),
        "updated_by": draft.updated_by if draft else None,
        "updated_at": draft.updated_at if draft else None,
    }


class PolicyDraftView(ApiView):
    access = {"GET": Action.POLICIES_VIEW, "PUT": Action.POLICIES_MANAGE}

    @extend_schema(responses=PolicyDraftSerializer, summary="The draft rule list")
    def get(self, request: Request) -> Response:
        return Response(PolicyDraftSerializer(_draft_body(self.org)).data)

    @extend_schema(
        request=PolicyDraftUpdateSerializer,
        responses=PolicyDraftSerializer,
        summary="Replace the draft rule list (validated rule by rule)",
    )
    def put(self, request: Request) -> Response:
        data = self.body(PolicyDraftUpdateSerializer)
        policy_draft_update(org=self.org, actor=self.actor, rules=data["rules"])
        return Response(PolicyDraftSerializer(_draft_body(self.org)).data)


class PolicyPublishView(ApiView):
    access = {"POST": Action.POLICIES_MANAGE}

    @extend_schema(
        request=PolicyPublishSerializer,
        responses={201: PolicyVersionSerializer},
        summary="Publish the draft as a new version",
    )
    @idempotent
    def post(self, request: Request) -> Response:
        data = self.body(PolicyPublishSerializer)
        version = policy_publish(org=self.org, actor=self.actor, note=data.get("note", ""))
        return Response(PolicyVersionSerializer(version).data, status=status.HTTP_201_CREATED)


class PolicyVersionListView(ApiView):
    access = {"GET": Action.POLICIES_VIEW}
    query = {"GET": PageQuery}
    paginator = KeysetPaginator("-number")

    @extend_schema(responses=page_of(PolicyVersionSummarySerializer), summary="Published versions")
    def get(self, request: Request) -> Response:
        versions = policy_versions_for_org(org=self.org)
        return Response(self.page(versions, PolicyVersionSummarySerializer))


class PolicyVersionDetailView(ApiView):
    access = {"GET": Action.POLICIES_VIEW}

    @extend_schema(responses=PolicyVersionSerializer, summary="One published version")
    def get(self, request: Request, number: int) -> Response:
        version = policy_version_get_for_org(org=self.org, number=number)
        return Response(PolicyVersionSerializer(version).data)


class PolicyVersionDiffView(ApiView):
    access = {"GET": Action.POLICIES_VIEW}

    @extend_schema(
        responses=PolicyVersionDiffSerializer,
        summary="Rules added, removed, changed and reordered from version a to version b",
    )
    def get(self, request: Request, number: int, other: int) -> Response:
        old = policy_version_get_for_org(org=self.org, number=number)
        new = policy_version_get_for_org(org=self.org, number=other)
        diff = policy_diff(old.rules, new.rules)
        return Response({"from_version": old.number, "to_version": new.number, **diff})


class PolicyRollbackView(ApiView):
    access = {"POST": Action.POLICIES_MANAGE}

    @extend_schema(
        request=PolicyPublishSerializer,
        responses={201: PolicyVersionSerializer},
        summary="Publish a new version with the rules of this one (the draft follows)",
    )
    @idempotent
    def post(self, request: Request, number: int) -> Response:
        version = policy_version_get_for_org(org=self.org, number=number)
        data = self.body(PolicyPublishSerializer)
        new = policy_rollback(
            org=self.org, actor=self.actor, number=version.number, note=data.get("note", "")
        )
        return Response(PolicyVersionSerializer(new).data, status=status.HTTP_201_CREATED)


class PolicySimulateView(ApiView):
    # A dry run changes nothing: POST for the body, but the read scope is enough.
    access = {"POST": Access(Action.POLICIES_VIEW, scope="read")}

    @extend_schema(
        request=PolicySimulateSerializer,
        responses=SimulationSerializer,
        summary="Decide a hypothetical call and explain why",
    )
    def post(self, request: Request) -> Response:
        data = self.body(PolicySimulateSerializer)
        compiled, documents, label = compiled_policy(self.org, data["version"])
        call = CallContext(
            org_id=str(self.org.id),
            server_slug=data["server"],
            method=data["method"],
            name=data.get("tool") or None,
            arguments=data.get("arguments"),
            key_id=str(data["key"]) if data.get("key") else None,
            key_tags=frozenset(data.get("key_tags") or ()),
            role=data.get("role") or None,
            now=data.get("at") or timezone.now(),
        )
        explanation = compiled.explain(call)
        decision = explanation.decision
        matched = documents[decision.rule_index] if decision.rule_index is not None else None
        return Response(
            {
                "policy": label,
                "decision": {
                    "action": decision.action,
                    "rule_id": decision.rule_id,
                    "rule_index": decision.rule_index,
                    "version": decision.version,
                    "message": decision.message,
                    "reason": decision.reason,
                },
                "matched_rule": matched,
                "skipped": [
                    {"rule_index": s.rule_index, "rule_id": s.rule_id, "reason": s.reason}
                    for s in explanation.skipped
                ],
            }
        )
