from django.db import migrations, models
from django.db.models import F


def backfill_slots(apps, schema_editor):
    # A 2026-07-28-era session recorded before slots existed is its slot's generation 0, whose
    # session id is the slot itself (proxy.eras.modern_session_id).
    AgentSession = apps.get_model("governance", "AgentSession")
    AgentSession.objects.filter(era="modern").update(slot=F("id"))


class Migration(migrations.Migration):
    dependencies = [
        ("governance", "0004_killswitch"),
    ]

    operations = [
        migrations.AddField(
            model_name="agentsession",
            name="generation",
            field=models.PositiveIntegerField(default=0),
        ),
        migrations.AddField(
            model_name="agentsession",
            name="slot",
            field=models.CharField(blank=True, db_index=True, max_length=64),
        ),
        migrations.RunPython(backfill_slots, migrations.RunPython.noop),
    ]
