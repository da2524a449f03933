"""Blank the note that rollbacks used to write for themselves ("rollback to v1").

The rollback is recorded in `rolled_back_from`, and the console now says it once from there
("Rolled back to v1 (from v3)"); the generated note made it say so twice. Notes an operator
wrote are kept.
"""

from __future__ import annotations

from django.db import migrations


def blank_generated_rollback_notes(apps, schema_editor):
    PolicyVersion = apps.get_model("governance", "PolicyVersion")
    rollbacks = PolicyVersion.objects.filter(
        rolled_back_from__isnull=False, note__startswith="rollback to v"
    )
    for version in rollbacks.only("pk", "note", "rolled_back_from"):
        if version.note == f"rollback to v{version.rolled_back_from}":
            PolicyVersion.objects.filter(pk=version.pk).update(note="")


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0006_organization_retention_minimum"),
    ]

    operations = [
        migrations.RunPython(blank_generated_rollback_notes, migrations.RunPython.noop),
    ]
