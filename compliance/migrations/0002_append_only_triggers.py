"""The database refuses to change audit history (CONVENTIONS.md habit 6; compliance-and-billing.md
section 4.3, verified on PostgreSQL 15).

PostgreSQL: BEFORE UPDATE OR DELETE row triggers and a BEFORE TRUNCATE statement trigger (TRUNCATE
fires no row triggers) raise on the audit event and checkpoint tables. Truncating an *empty* table
is let through: it changes nothing, and it is what Django's test flush does on every table. A
BRIN index on `ts` serves time-range scans of an insert-ordered table for a few pages of index.

SQLite (the embedded default): a BEFORE UPDATE trigger. No DELETE trigger, because Django's test
flush empties SQLite tables with DELETE; the ORM guard (AppendOnlyQuerySet) refuses deletes there.

A superuser or the table owner can still disable the triggers; signed checkpoints kept outside
the database are what detect that.
"""

from django.db import migrations

TABLES = {
    "compliance_auditevent": "audit events are append-only",
    "compliance_checkpoint": "audit checkpoints are append-only",
}

PG_FUNCTION = """
CREATE OR REPLACE FUNCTION igris_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
DECLARE
    is_empty boolean;
BEGIN
    IF TG_OP = 'TRUNCATE' THEN
        EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %I.%I)', TG_TABLE_SCHEMA, TG_TABLE_NAME)
            INTO is_empty;
        IF is_empty THEN
            RETURN NULL;
        END IF;
    END IF;
    RAISE EXCEPTION '%', TG_ARGV[0] USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def _pg_install(table: str, message: str) -> list[str]:
    quoted = message.replace("'", "''")
    return [
        f"""CREATE TRIGGER {table}_no_change BEFORE UPDATE OR DELETE ON {table}
            FOR EACH ROW EXECUTE FUNCTION igris_audit_append_only('{quoted}')""",
        f"""CREATE TRIGGER {table}_no_truncate BEFORE TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION igris_audit_append_only('{quoted}')""",
    ]


def install(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        # params=None: the SQL holds literal % signs that must not be read as placeholders.
        schema_editor.execute(PG_FUNCTION, None)
        for table, message in TABLES.items():
            for statement in _pg_install(table, message):
                schema_editor.execute(statement, None)
        schema_editor.execute(
            "CREATE INDEX audit_event_ts_brin ON compliance_auditevent USING brin (ts)"
        )
    elif vendor == "sqlite":
        for table, message in TABLES.items():
            schema_editor.execute(
                f"CREATE TRIGGER {table}_no_update BEFORE UPDATE ON {table} "
                f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
            )


def uninstall(apps, schema_editor):
    vendor = schema_editor.connection.vendor
    if vendor == "postgresql":
        schema_editor.execute("DROP INDEX IF EXISTS audit_event_ts_brin")
        for table in TABLES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_change ON {table}")
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_truncate ON {table}")
        schema_editor.execute("DROP FUNCTION IF EXISTS igris_audit_append_only()")
    elif vendor == "sqlite":
        for table in TABLES:
            schema_editor.execute(f"DROP TRIGGER IF EXISTS {table}_no_update")


class Migration(migrations.Migration):
    dependencies = [("compliance", "0001_initial")]

    operations = [migrations.RunPython(install, uninstall, elidable=False)]
