"""The audit trail is append-only and hash-chained; `verify_audit` finds any break."""

from __future__ import annotations

import threading
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connections, transaction

from audit.chain import GENESIS_HASH
from audit.models import AuditEvent, EventType
from audit.services import audit_record
from audit.verify import verify_chain


def _record(n: int, *, actor_id: int = 7) -> list[AuditEvent]:
    return [
        audit_record(
            event_type=EventType.TOKEN_ISSUED,
            actor_id=actor_id,
            subject=f"user:{i}",
            decision="issued",
            metadata={"i": i, "ttl_s": 300, "ratio": 0.25, "scopes": ["chat"]},
        )
        for i in range(n)
    ]


def _verify() -> str:
    out = StringIO()
    call_command("verify_audit", stdout=out)
    return out.getvalue()


def _tamper(superuser_db, sql: str, params: list[object]) -> None:
    """What a superuser can do: switch triggers off for its own session and change rows."""
    with superuser_db.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute(sql, params)
    superuser_db.commit()


@pytest.mark.django_db
def test_each_event_links_to_the_previous_and_the_chain_verifies():
    events = _record(3)
    assert events[1].prev_hash == events[0].row_hash
    assert events[2].prev_hash == events[1].row_hash
    first = AuditEvent.objects.order_by("id").first()
    assert first is not None
    assert first.prev_hash == GENESIS_HASH
    output = _verify()
    assert "intact" in output
    assert f"head {events[2].row_hash}" in output


@pytest.mark.django_db
def test_audit_record_refuses_an_unknown_event_kind_and_writes_nothing():
    # The column has no DB choices list, so audit_record is what keeps kinds to the enum.
    before = AuditEvent.objects.count()
    with pytest.raises(ValueError, match="not.a.kind"):
        audit_record(event_type="not.a.kind", actor_id=None)  # type: ignore[arg-type]
    assert AuditEvent.objects.count() == before


@pytest.mark.django_db
def test_update_of_an_audit_event_is_refused_for_the_app_role():
    event = _record(1)[0]
    with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(reason="covered-up")
    event.refresh_from_db()
    assert event.reason == ""


@pytest.mark.django_db
def test_delete_of_an_audit_event_is_refused_for_the_app_role():
    event = _record(1)[0]
    with pytest.raises(DatabaseError, match="permission denied"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()
    assert AuditEvent.objects.filter(pk=event.pk).exists()


@pytest.mark.django_db(transaction=True)
def test_verify_audit_finds_a_row_altered_by_the_superuser(superuser_db):
    events = _record(4)
    assert verify_chain().ok
    _tamper(
        superuser_db,
        "UPDATE audit_auditevent SET decision = 'denied' WHERE id = %s",
        [events[2].pk],
    )
    with pytest.raises(CommandError, match="BROKEN"):
        call_command("verify_audit", stderr=StringIO())
    report = verify_chain()
    assert any(f"event {events[2].pk}: content" in b for b in report.breaks)


@pytest.mark.django_db(transaction=True)
def test_verify_audit_finds_a_row_deleted_by_the_superuser(superuser_db):
    events = _record(4)
    _tamper(superuser_db, "DELETE FROM audit_auditevent WHERE id = %s", [events[1].pk])
    report = verify_chain()
    assert not report.ok
    assert any(f"event {events[2].pk}: link broken" in b for b in report.breaks)


@pytest.mark.django_db(transaction=True)
def test_verify_audit_finds_a_metadata_change_even_when_hashes_are_kept(superuser_db):
    events = _record(2)
    _tamper(
        superuser_db,
        """UPDATE audit_auditevent SET metadata = '{"i": 0, "ttl_s": 86400}' WHERE id = %s""",
        [events[0].pk],
    )
    assert not verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_concurrent_writers_cannot_fork_the_chain():
    writers, per_writer = 6, 15
    before = AuditEvent.objects.count()
    errors: list[BaseException] = []
    start = threading.Barrier(writers)

    def write(actor_id: int) -> None:
        try:
            start.wait()
            _record(per_writer, actor_id=actor_id)
        except BaseException as exc:  # surfaced below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(a,)) for a in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    events = list(AuditEvent.objects.order_by("id"))
    assert len(events) == before + writers * per_writer
    prevs = [e.prev_hash for e in events]
    assert len(set(prevs)) == len(prevs), "two events share a predecessor: the chain forked"
    report = verify_chain()
    assert report.ok, report.breaks
    assert report.checked == before + writers * per_writer
