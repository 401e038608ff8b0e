"""How the audit trail itself is retained.

Audit rows are never changed, and the application role can never delete them. Old rows
leave the table in two steps:

1. `audit_checkpoint_record(before=…)` (application role, beat task): verifies the chain up
   to the newest row older than `before` and appends a `retention.checkpoint` event naming
   that row's id and hash. The checkpoint is itself a link of the chain.
2. `audit_purge()` (owner role only, `DATABASE_ROLE=owner manage.py audit_purge`): deletes
   the rows up to the newest checkpoint's boundary that is still older than the policy,
   in one transaction that sets `audit.purge_through`, the only way past the append-only
   row trigger.

`verify_chain` then starts from the first remaining row: it must link to the genesis hash
or to the boundary hash of a checkpoint that is itself in the verified chain. Removing
any other prefix, or any row in the middle, still shows as a break.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from audit.chain import CHAIN_VERSION, GENESIS_HASH, LEGACY_VERSION
from audit.models import AuditEvent, EventType
from audit.services import audit_record, row_version


class PurgeRefused(RuntimeError):
    """There is nothing a checkpoint allows to purge, or the chain does not verify."""


@dataclass(frozen=True, slots=True)
class Boundary:
    through_id: int
    through_hash: str


def checkpoint_boundaries() -> dict[str, Boundary]:
    """Every checkpoint's boundary, keyed by the boundary hash."""
    found: dict[str, Boundary] = {}
    for metadata in AuditEvent.objects.filter(
        event_type=EventType.RETENTION_CHECKPOINT
    ).values_list("metadata", flat=True):
        through_hash = metadata.get("through_hash")
        through_id = metadata.get("through_id")
        if isinstance(through_hash, str) and isinstance(through_id, int):
            found[through_hash] = Boundary(through_id=through_id, through_hash=through_hash)
    return found


def _segment_verifies(*, after: Boundary | None, through_id: int) -> int | None:
    """Verify the rows after the previous boundary up to `through_id`; their count, or None
    when any link or hash fails."""
    expected = after.through_hash if after else GENESIS_HASH
    rows = AuditEvent.objects.filter(id__lte=through_id).order_by("id")
    if after:
        rows = rows.filter(id__gt=after.through_id)
    count = 0
    keyed_seen = False
    for event in rows.iterator(chunk_size=2000):
        if event.prev_hash != expected:
            return None
        version = row_version(event)
        if version is None or (version == LEGACY_VERSION and keyed_seen):
            return None
        keyed_seen = keyed_seen or version == CHAIN_VERSION
        expected = event.row_hash
        count += 1
    return count


def audit_checkpoint_record(*, before: datetime, request_id: str = "") -> AuditEvent | None:
    """Append a checkpoint covering every audit row created before `before`, once the rows
    since the previous boundary verify. None when there is nothing new to cover."""
    boundary = (
        AuditEvent.objects.filter(created_at__lt=before)
        .exclude(event_type=EventType.RETENTION_CHECKPOINT)
        .order_by("-id")
        .first()
    )
    if boundary is None:
        return None
    latest = latest_boundary()
    if latest is not None and latest.through_id >= boundary.pk:
        return None
    count = _segment_verifies(after=latest, through_id=boundary.pk)
    if count is None:
        raise PurgeRefused("the audit chain does not verify up to the boundary: no checkpoint")
    return audit_record(
        event_type=EventType.RETENTION_CHECKPOINT,
        actor_id=None,
        request_id=request_id,
        subject=f"audit:{boundary.pk}",
        decision="checkpoint",
        metadata={
            "through_id": boundary.pk,
            "through_hash": boundary.row_hash,
            "through_created_at": boundary.created_at.isoformat(),
            "rows": count,
        },
    )


def latest_boundary() -> Boundary | None:
    boundaries = sorted(checkpoint_boundaries().values(), key=lambda b: b.through_id)
    return boundaries[-1] if boundaries else None


def _purgeable_boundary(now: datetime) -> Boundary | None:
    """The newest checkpoint whose boundary row is still there, matches its hash and is
    older than the audit retention policy *now*. Checking the age again here means that a
    checkpoint appended by the application role (which may INSERT audit rows) can never
    make the owner's purge reach rows the policy still keeps."""
    cutoff = now - timedelta(days=settings.RETENTION_AUDIT_DAYS)
    for boundary in sorted(checkpoint_boundaries().values(), key=lambda b: -b.through_id):
        row = AuditEvent.objects.filter(pk=boundary.through_id).first()
        if row is not None and row.row_hash == boundary.through_hash and row.created_at < cutoff:
            return boundary
    return None


def audit_purge(*, now: datetime | None = None) -> int:
    """Delete the audit rows covered by the newest checkpoint that the retention policy
    allows (owner role only: the application role has no DELETE privilege on the table).
    Returns the rows deleted."""
    from audit.verify import verify_chain

    if settings.RETENTION_AUDIT_DAYS <= 0:
        raise PurgeRefused("audit retention is off (RETENTION_AUDIT_DAYS=0)")
    boundary = _purgeable_boundary(now or timezone.now())
    if boundary is None:
        raise PurgeRefused("no retention checkpoint covers rows older than the policy")
    report = verify_chain()
    if not report.ok:
        raise PurgeRefused("the audit chain is broken; purging would hide it: " + report.breaks[0])
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('audit.purge_through', %s, true)", [str(boundary.through_id)]
        )
        cursor.execute("DELETE FROM audit_auditevent WHERE id <= %s", [boundary.through_id])
        deleted = cursor.rowcount
        cursor.execute("SELECT set_config('audit.purge_through', '', true)")
    return int(deleted)
