"""Verify the audit hash chains; exit non-zero if any is broken (for cron, CI and auditors)."""

from __future__ import annotations

import uuid
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from compliance.audit.verify import organizations_with_audit_data, verify_chain


class Command(BaseCommand):
    help = "Verify each organisation's audit chain against its chain head and signed checkpoints."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--org", help="Only this organisation (id or slug).")

    def handle(self, *args: Any, **options: Any) -> None:
        from governance.models import Organization

        slugs = dict(Organization.objects.values_list("id", "slug"))
        if options["org"]:
            org_ids = [self._resolve(options["org"], slugs)]
        else:
            org_ids = organizations_with_audit_data()
        broken = 0
        for org_id in org_ids:
            result = verify_chain(org_id)
            label = f"{org_id} {slugs.get(org_id, '-')}"
            if result.first_break is None:
                self.stdout.write(f"{label}: ok, {result.checked} events")
            else:
                broken += 1
                fault = result.first_break
                self.stdout.write(
                    f"{label}: BROKEN at seq {fault.seq}: {fault.reason}"
                    f" ({fault.detail}); {result.checked} events verified before it"
                )
        if broken:
            raise CommandError(f"{broken} of {len(org_ids)} audit chains are broken")

    @staticmethod
    def _resolve(value: str, slugs: dict[uuid.UUID, str]) -> uuid.UUID:
        try:
            return uuid.UUID(value)  # a deleted organisation's chain stays verifiable by id
        except ValueError:
            pass
        for org_id, slug in slugs.items():
            if slug == value:
                return org_id
        raise CommandError(f"no organisation with id or slug {value!r}")
