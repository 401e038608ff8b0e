"""Writing audit events. Callers write them inside the transaction of the change, as that
transaction's last statement (the chain lock is then held only until commit)."""

from __future__ import annotations

from functools import partial
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from audit.chain import GENESIS_HASH, canonical_payload, chain_hash
from audit.metrics import audit_event_observed
from audit.models import AuditEvent, EventType

# One chain, one writer at a time: a transaction-scoped advisory lock serialises appends so
# that concurrent writers can never link two rows to the same predecessor.
CHAIN_LOCK_KEY = 0x5EC0A0D1


def audit_record(
    *,
    event_type: EventType,
    actor_id: int | None,
    request_id: str = "",
    token_id: str | None = None,
    subject: str = "",
    decision: str = "",
    reason: str = "",
    metadata: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event. `metadata` must hold identifiers and numbers, never text."""
    event_type = EventType(event_type)  # ValueError on a name that is not an event kind
    with transaction.atomic():
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s)", [CHAIN_LOCK_KEY])
        last = AuditEvent.objects.order_by("-id").values_list("row_hash", flat=True).first()
        prev_hash = last or GENESIS_HASH
        event = AuditEvent(
            created_at=timezone.now(),
            event_type=event_type,
            actor_id=actor_id,
            request_id=request_id,
            token_id=token_id or "",
            subject=subject,
            decision=decision,
            reason=reason,
            metadata=metadata or {},
            prev_hash=prev_hash,
        )
        event.row_hash = chain_hash(prev_hash, payload_of(event))
        event.save(force_insert=True)
        # Counted once the event is durable: a rolled-back decision never happened.
        transaction.on_commit(
            partial(
                audit_event_observed,
                event_type=event.event_type,
                decision=event.decision,
                reason=event.reason,
                metadata=event.metadata,
            ),
            robust=True,
        )
    return event


def payload_of(event: AuditEvent) -> bytes:
    return canonical_payload(
        created_at=event.created_at,
        request_id=event.request_id,
        actor_id=event.actor_id,
        token_id=event.token_id,
        event_type=event.event_type,
        subject=event.subject,
        decision=event.decision,
        reason=event.reason,
        metadata=event.metadata,
    )
