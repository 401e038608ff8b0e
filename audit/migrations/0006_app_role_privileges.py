"""The application role's privileges, and TRUNCATE protection for the audit trail.

Run by the owner role (`DATABASE_ROLE=owner manage.py migrate`). The application role
(the user of DATABASE_URL) gets row access to every table, but on audit tables only SELECT
and INSERT: no UPDATE, DELETE or TRUNCATE, on top of the triggers. It owns nothing, so it
cannot ALTER a table to disable a trigger or row-level security. Tables created by later
migrations get the same row access by default privilege; a new audit table's migration
must revoke UPDATE/DELETE/TRUNCATE again (tests/audit/test_privileges.py checks every
`audit_*` table).

When migrations run as the application role itself (one role for both: no owner URL
configured) there is nobody to grant to, and this migration only adds the triggers.

Rows are deleted only by the privileged audit purge (`audit_purge`, owner role): the row
trigger lets a DELETE through only for ids at or below `audit.purge_through`, a setting
that command makes for its own transaction after checking that a checkpoint covers them.
TRUNCATE is refused by a statement trigger unless `audit.allow_truncate` is on — which
only the test harness sets, as the owner, to reset its database between tests.
"""

from django.conf import settings
from django.db import migrations

TRIGGERS = """
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE purge_through text := current_setting('audit.purge_through', true);
BEGIN
    IF TG_OP = 'DELETE' AND coalesce(purge_through, '') <> ''
       AND OLD.id <= purge_through::bigint THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE FUNCTION audit_refuse_truncate() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('audit.allow_truncate', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'audit_auditevent is append-only: TRUNCATE refused'
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
CREATE TRIGGER audit_append_only_truncate BEFORE TRUNCATE ON audit_auditevent
    FOR EACH STATEMENT EXECUTE FUNCTION audit_refuse_truncate();
"""

DROP_TRIGGERS = """
DROP TRIGGER IF EXISTS audit_append_only_truncate ON audit_auditevent;
DROP FUNCTION IF EXISTS audit_refuse_truncate();
CREATE OR REPLACE FUNCTION audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit_auditevent is append-only: % refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END;
$$;
"""


def grant_app_role(apps, schema_editor):
    role = settings.DATABASE_APP_USER
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_user, EXISTS (SELECT FROM pg_roles WHERE rolname = %s)", [role])
        me, exists = cursor.fetchone()
        if not role or role == me or not exists:
            return
        quoted = connection.ops.quote_name(role)
        cursor.execute(f"GRANT USAGE ON SCHEMA public TO {quoted}")
        cursor.execute(f"GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA public TO {quoted}")
        cursor.execute(f"GRANT USAGE, SELECT ON ALL SEQUENCES IN SCHEMA public TO {quoted}")
        cursor.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public"
            f" GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {quoted}"
        )
        cursor.execute(
            f"ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT USAGE, SELECT ON SEQUENCES TO {quoted}"
        )
        cursor.execute(
            "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
            " AND tablename LIKE 'audit\\_%%'"
        )
        for (table,) in cursor.fetchall():
            cursor.execute(
                f"REVOKE UPDATE, DELETE, TRUNCATE, REFERENCES, TRIGGER"
                f" ON {connection.ops.quote_name(table)} FROM {quoted}"
            )
        # The migration history is the owner's to write.
        cursor.execute(f"REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON django_migrations FROM {quoted}")


class Migration(migrations.Migration):
    dependencies = [("audit", "0005_event_type_without_choices")]

    operations = [
        migrations.RunSQL(TRIGGERS, DROP_TRIGGERS),
        migrations.RunPython(grant_app_role, migrations.RunPython.noop),
    ]
