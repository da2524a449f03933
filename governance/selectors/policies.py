"""Policy versions and the draft."""

from __future__ import annotations

from typing import Any

from django.db.models import F, Func, IntegerField, QuerySet
from django.http import Http404

from governance.models import Organization, PolicyDraft, PolicyVersion
from governance.selectors.ids import MISSES, positive_int


class JsonArrayLength(Func):
    """Rule count of a stored version without loading its rules (PostgreSQL and SQLite)."""

    function = "jsonb_array_length"
    output_field = IntegerField()

    def as_sqlite(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        return self.as_sql(compiler, connection, function="json_array_length", **extra)


def policy_versions_for_org(*, org: Organization) -> QuerySet[PolicyVersion]:
    return PolicyVersion.objects.filter(org=org).select_related("published_by")


def policy_version_get_for_org(*, org: Organization, number: Any) -> PolicyVersion:
    try:
        return policy_versions_for_org(org=org).get(number=positive_int(number))
    except (PolicyVersion.DoesNotExist, *MISSES):
        raise Http404(f"there is no policy version {number}") from None


def policy_latest_for_org(*, org: Organization) -> PolicyVersion | None:
    return policy_versions_for_org(org=org).order_by("-number").first()


def policy_draft_for_org(*, org: Organization) -> PolicyDraft | None:
    return PolicyDraft.objects.filter(org=org).select_related("updated_by").first()


def policy_versions_listed_for_org(*, org: Organization) -> QuerySet[PolicyVersion]:
    """Newest first, each with its rule count but without its rules (a version may hold
    thousands)."""
    return (
        PolicyVersion.objects.filter(org=org)
        .select_related("published_by")
        .defer("rules")
        .annotate(rule_count=JsonArrayLength(F("rules")))
        .order_by("-number")
    )


def policy_version_in_policy_get(*, org: Organization, org_slug: str, number: int) -> PolicyVersion:
    """Version `number` of the organisation's policy, which is named by the organisation's slug.
    Another organisation's policy, even one the user also belongs to, is as absent here as a
    version that does not exist."""
    version = None
    if org_slug == org.slug:
        version = (
            PolicyVersion.objects.filter(org=org, number=number)
            .select_related("published_by")
            .first()
        )
    if version is None:
        raise Http404("no such policy version in this organisation")
    return version


def policy_version_before(*, org: Organization, number: int) -> PolicyVersion | None:
    return PolicyVersion.objects.filter(org=org, number__lt=number).order_by("-number").first()


def policy_latest_number_for_org(*, org: Organization) -> int | None:
    return (
        PolicyVersion.objects.filter(org=org)
        .order_by("-number")
        .values_list("number", flat=True)
        .first()
    )


def policy_version_numbers_for_org(*, org: Organization) -> list[int]:
    return list(
        PolicyVersion.objects.filter(org=org).order_by("-number").values_list("number", flat=True)
    )


def policy_version_rules(*, version: PolicyVersion) -> Any:
    """The rules of a version loaded without them (`policy_versions_listed_for_org` defers them)."""
    return PolicyVersion.objects.filter(pk=version.pk).values_list("rules", flat=True).first()
