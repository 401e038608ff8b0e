"""Retention of the audit trail: a checkpoint vouches for old rows, only the owner role
purges them, and the chain still verifies afterwards — while any other removal shows."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import DatabaseError, transaction
from django.test import override_settings
from django.utils import timezone

from audit.models import AuditEvent, EventType
from audit.retention import PurgeRefused, audit_checkpoint_record, audit_purge
from audit.services import audit_record
from audit.verify import verify_chain
from tests.db_roles import owner_role


def _record(n: int) -> list[AuditEvent]:
    return [
        audit_record(event_type=EventType.CONFIG_CHANGED, actor_id=1, subject=f"s:{i}")
        for i in range(n)
    ]


def _checkpointed() -> tuple[list[AuditEvent], AuditEvent, list[AuditEvent]]:
    old = _record(3)
    boundary_time = timezone.now()
    newer = _record(2)
    checkpoint = audit_checkpoint_record(before=boundary_time)
    assert checkpoint is not None
    return old, checkpoint, newer + _record(2)


def _purge_as_owner() -> int:
    # The rows are seconds old: purge as if the one-day policy had passed.
    with owner_role(), override_settings(RETENTION_AUDIT_DAYS=1):
        return audit_purge(now=timezone.now() + timedelta(days=2))


@pytest.mark.django_db
def test_checkpoint_names_the_newest_row_before_the_cutoff_and_is_chained():
    old, checkpoint, _ = _checkpointed()
    assert checkpoint.event_type == EventType.RETENTION_CHECKPOINT
    assert checkpoint.metadata["through_id"] == old[-1].pk
    assert checkpoint.metadata["through_hash"] == old[-1].row_hash
    assert verify_chain().ok
    # Nothing new before the cutoff: no second checkpoint.
    assert audit_checkpoint_record(before=old[-1].created_at) is None


@pytest.mark.django_db(transaction=True)
def test_owner_purge_through_a_checkpoint_leaves_a_chain_that_verifies():
    old, checkpoint, newer = _checkpointed()
    assert _purge_as_owner() >= len(old)
    assert not AuditEvent.objects.filter(id__lte=old[-1].pk).exists()
    remaining = list(AuditEvent.objects.order_by("id"))
    assert remaining[0].prev_hash == old[-1].row_hash
    assert checkpoint.pk in {e.pk for e in remaining}
    report = verify_chain()
    assert report.ok, report.breaks
    assert report.checked == len(remaining)
    # The chain keeps growing and verifying after the purge, and checkpoints continue.
    _record(2)
    later = audit_checkpoint_record(before=timezone.now())
    assert later is not None
    assert later.metadata["through_id"] > checkpoint.pk
    assert verify_chain().ok


@pytest.mark.django_db(transaction=True)
@override_settings(RETENTION_AUDIT_DAYS=1)
def test_app_role_cannot_purge_audit_rows():
    old, _, _ = _checkpointed()
    with (
        pytest.raises(DatabaseError, match="permission denied"),
        transaction.atomic(),
    ):
        audit_purge(now=timezone.now() + timedelta(days=2))
    assert AuditEvent.objects.filter(pk=old[0].pk).exists()


@pytest.mark.django_db(transaction=True)
def test_a_checkpoint_newer_than_the_policy_purges_nothing():
    # E.g. one appended by a compromised application role naming the newest rows.
    old, _, _ = _checkpointed()
    with owner_role(), pytest.raises(PurgeRefused, match="older than the policy"):
        audit_purge()  # default policy: 400 days; these rows are seconds old
    assert AuditEvent.objects.filter(pk=old[0].pk).exists()


@pytest.mark.django_db
def test_purge_without_a_checkpoint_is_refused():
    _record(2)
    with pytest.raises(CommandError, match="no retention checkpoint"):
        call_command("audit_purge", stderr=StringIO())


@pytest.mark.django_db(transaction=True)
def test_removing_old_rows_without_a_checkpoint_is_found(superuser_db):
    events = _record(4)
    with superuser_db.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("DELETE FROM audit_auditevent WHERE id <= %s", [events[1].pk])
    superuser_db.commit()
    report = verify_chain()
    assert not report.ok
    assert report.breaks[0].startswith("chain start")


@pytest.mark.django_db(transaction=True)
def test_removing_more_than_the_checkpoint_covers_is_found(superuser_db):
    _, _, newer = _checkpointed()
    with superuser_db.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("DELETE FROM audit_auditevent WHERE id <= %s", [newer[0].pk])
    superuser_db.commit()
    assert not verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_the_purge_setting_lets_no_row_past_the_boundary_through(owner_db):
    old, _, newer = _checkpointed()
    owner_db.execute("SELECT set_config('audit.purge_through', %s, false)", [str(old[-1].pk)])
    with pytest.raises(Exception, match="append-only: DELETE"):
        owner_db.execute("DELETE FROM audit_auditevent WHERE id = %s", [newer[0].pk])


@pytest.mark.django_db(transaction=True)
def test_a_broken_chain_is_neither_checkpointed_nor_purged(superuser_db):
    events = _record(3)
    cutoff = timezone.now()
    with superuser_db.cursor() as cursor:
        cursor.execute("SET session_replication_role = replica")
        cursor.execute("UPDATE audit_auditevent SET decision = 'x' WHERE id = %s", [events[1].pk])
    superuser_db.commit()
    with pytest.raises(PurgeRefused):
        audit_checkpoint_record(before=cutoff)
    assert not AuditEvent.objects.filter(event_type=EventType.RETENTION_CHECKPOINT).exists()
