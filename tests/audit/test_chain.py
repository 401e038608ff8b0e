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


def _append_as_the_app_role(*, row_hash_of, event_type=EventType.TOKEN_ISSUED) -> AuditEvent:
    """What someone holding only the app's database role can do: INSERT a row that links to
    the current head, with a hash they can compute themselves."""
    from django.utils import timezone

    from audit.services import payload_of

    head = AuditEvent.objects.order_by("-id").values_list("row_hash", flat=True).first()
    event = AuditEvent(
        created_at=timezone.now(),
        event_type=event_type,
        actor_id=1,
        subject="user:1",
        decision="issued",
        metadata={},
        prev_hash=head or GENESIS_HASH,
    )
    event.row_hash = row_hash_of(event, payload_of)
    event.save(force_insert=True)
    return event


@pytest.mark.django_db
def test_rows_appended_without_the_chain_key_do_not_verify():
    """The chain is keyed (HMAC): a correctly linked row with a plain SHA-256 hash, or an
    HMAC under another key, is reported as forged."""
    from audit.chain import LEGACY_VERSION, chain_hash

    _record(2)
    assert verify_chain().ok
    forged = _append_as_the_app_role(
        row_hash_of=lambda e, payload_of: chain_hash(
            e.prev_hash, payload_of(e, version=LEGACY_VERSION)
        )
    )
    report = verify_chain()
    assert report.breaks == (f"event {forged.pk}: unkeyed hash after keyed rows (forged)",)


@pytest.mark.django_db
def test_a_row_sealed_with_another_key_does_not_verify():
    from audit.chain import keyed_chain_hash

    _record(1)
    forged = _append_as_the_app_role(
        row_hash_of=lambda e, payload_of: keyed_chain_hash(
            e.prev_hash, payload_of(e), b"guessed-key"
        )
    )
    (problem,) = verify_chain().breaks
    assert problem.startswith(f"event {forged.pk}: content does not match its hash")


@pytest.mark.django_db(transaction=True)
def test_a_chain_that_starts_with_legacy_rows_verifies_and_continues_keyed(superuser_db):
    """Rows written before the chain was keyed (SHA-256) still verify; new rows are keyed."""
    from audit.chain import LEGACY_VERSION, chain_hash
    from audit.services import row_version

    _tamper(superuser_db, "DELETE FROM audit_auditevent", [])  # an empty chain to start

    legacy = [
        _append_as_the_app_role(
            row_hash_of=lambda e, payload_of: chain_hash(
                e.prev_hash, payload_of(e, version=LEGACY_VERSION)
            )
        )
        for _ in range(2)
    ]
    keyed = _record(2)
    assert [row_version(e) for e in legacy + keyed] == [1, 1, 2, 2]
    assert verify_chain().ok


@pytest.mark.django_db
def test_the_chain_key_comes_from_a_secret_reference(settings, monkeypatch):
    from audit.services import chain_key, row_version

    monkeypatch.setenv("TEST_AUDIT_CHAIN_KEY", "k" * 40)
    settings.AUDIT_CHAIN_KEY_REF = "env:TEST_AUDIT_CHAIN_KEY"
    assert chain_key() == b"k" * 40
    events = _record(2)
    assert [row_version(e) for e in events] == [2, 2]
    settings.AUDIT_CHAIN_KEY_REF = ""
    settings.AUDIT_CHAIN_KEY = "another-key"
    assert [row_version(e) for e in events] == [None, None]
