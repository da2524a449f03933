"""Ingest sources: the gateways allowed to send events."""

from __future__ import annotations

from typing import Any

from django.http import Http404

from governance.models import IngestSource, Organization


def ingest_sources_for_org(*, org: Organization) -> list[IngestSource]:
    return list(IngestSource.objects.filter(org=org).select_related("created_by"))


def ingest_source_get_for_org(*, org: Organization, source_id: Any) -> IngestSource:
    source = IngestSource.objects.filter(org=org, pk=source_id).first()
    if source is None:
        raise Http404("no such ingest source in this organisation")
    return source
