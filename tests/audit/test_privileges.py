"""Database-level protection of the audit trail: the application role may only read and
append audit rows and owns nothing; even the owner meets the append-only triggers."""

from __future__ import annotations

import psycopg
import pytest
from django.db import DatabaseError, connection, transaction

from audit.models import AuditEvent, EventType
from audit.services import audit_record
from tests.db_roles import roles_are_split

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.skipif(not roles_are_split(), reason="one database role (no owner URL)"),
]

_INSERT = (
    "INSERT INTO audit_auditevent (created_at, request_id, actor_id, token_id, event_type,"
    " subject, decision, reason, metadata, prev_hash, row_hash)"
    " VALUES (now(), '', NULL, '', 'config.changed', '', '', '', '{}', %s, %s) RETURNING id"
)


def _refused(sql: str, match: str) -> None:
    with pytest.raises(DatabaseError, match=match), transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute(sql)


def _event() -> AuditEvent:
    return audit_record(event_type=EventType.CONFIG_CHANGED, actor_id=None, subject="s")


def test_app_role_is_neither_superuser_nor_owner_of_the_audit_table():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.rolsuper, r.rolbypassrls, r.rolcreatedb,"
            " pg_get_userbyid(c.relowner) = current_user"
            " FROM pg_roles r, pg_class c"
            " WHERE r.rolname = current_user AND c.relname = 'audit_auditevent'"
        )
        assert cursor.fetchone() == (False, False, False, False)


def test_app_role_may_read_and_append_audit_rows_only():
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT t.tablename, p.privilege,"
            " has_table_privilege(current_user, format('public.%I', t.tablename), p.privilege)"
            " FROM pg_tables t, unnest(ARRAY['SELECT','INSERT','UPDATE','DELETE','TRUNCATE',"
            "   'TRIGGER','REFERENCES']) AS p(privilege)"
            " WHERE t.schemaname = 'public' AND t.tablename LIKE 'audit\\_%%'"
        )
        rows = cursor.fetchall()
    assert {t for t, _, _ in rows} >= {"audit_auditevent"}
    granted = {(t, p) for t, p, has in rows if has}
    assert granted == {(t, p) for t, _, _ in rows for p in ("SELECT", "INSERT")}


def test_app_role_update_of_audit_rows_is_refused():
    event = _event()
    _refused(f"UPDATE audit_auditevent SET reason = 'x' WHERE id = {event.pk}", "permission denied")  # noqa: S608


def test_app_role_delete_of_audit_rows_is_refused():
    event = _event()
    _refused(f"DELETE FROM audit_auditevent WHERE id = {event.pk}", "permission denied")  # noqa: S608
    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_app_role_truncate_of_the_audit_table_is_refused():
    _event()
    _refused("TRUNCATE audit_auditevent", "permission denied")
    assert AuditEvent.objects.exists()


def test_app_role_cannot_disable_the_append_only_triggers():
    _refused("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_append_only_rows", "must be owner")
    _refused("ALTER TABLE audit_auditevent DISABLE TRIGGER ALL", "must be owner")
    _refused("SET session_replication_role = replica", "permission denied")


def test_app_role_cannot_drop_the_triggers_or_the_table():
    _refused("DROP TRIGGER audit_append_only_rows ON audit_auditevent", "must be owner")
    _refused("DROP TABLE audit_auditevent", "must be owner")


def test_app_role_cannot_switch_off_row_level_security():
    for table in ("retrieval_document", "retrieval_chunk", "retrieval_passage"):
        _refused(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY", "must be owner")
        _refused(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY", "must be owner")


def test_app_role_cannot_create_objects_in_the_schema():
    _refused("CREATE TABLE sneaky (id int)", "permission denied")


def test_app_role_cannot_rewrite_the_migration_history():
    _refused("DELETE FROM django_migrations", "permission denied")


def _owner_row(owner_db: psycopg.Connection) -> int:
    with owner_db.cursor() as cursor:
        cursor.execute(_INSERT, ["0" * 64, "f" * 64])
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def test_owner_update_of_audit_rows_is_refused_by_the_trigger(owner_db):
    row_id = _owner_row(owner_db)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: UPDATE"):
        owner_db.execute("UPDATE audit_auditevent SET reason = 'x' WHERE id = %s", [row_id])


def test_owner_delete_of_audit_rows_is_refused_by_the_trigger(owner_db):
    row_id = _owner_row(owner_db)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="append-only: DELETE"):
        owner_db.execute("DELETE FROM audit_auditevent WHERE id = %s", [row_id])


def test_owner_truncate_of_the_audit_table_is_refused_by_the_statement_trigger(owner_db):
    _owner_row(owner_db)
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="TRUNCATE refused"):
        owner_db.execute("TRUNCATE audit_auditevent")
