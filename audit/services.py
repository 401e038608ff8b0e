"""Writing audit events. Callers write them inside the transaction of the change, as that
transaction's last statement (the chain lock is then held only until commit)."""

from __future__ import annotations

import hashlib
import hmac
from functools import lru_cache, partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from app.secrets import resolve_secret
from audit.chain import (
    CHAIN_VERSION,
    GENESIS_HASH,
    LEGACY_VERSION,
    canonical_payload,
    chain_hash,
    keyed_chain_hash,
)
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
        event.row_hash = seal(event)
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


def payload_of(event: AuditEvent, *, version: int = CHAIN_VERSION) -> bytes:
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
        version=version,
    )


@lru_cache(maxsize=4)
def _key_from(ref: str, literal: str, secret_key: str) -> bytes:
    if ref:
        return resolve_secret(ref).encode()
    if literal:
        return literal.encode()
    return hmac.new(secret_key.encode(), b"audit-chain-v2", hashlib.sha256).digest()


def chain_key() -> bytes:
    """The key that seals the chain (settings AUDIT_CHAIN_KEY / AUDIT_CHAIN_KEY_REF)."""
    return _key_from(settings.AUDIT_CHAIN_KEY_REF, settings.AUDIT_CHAIN_KEY, settings.SECRET_KEY)


def seal(event: AuditEvent) -> str:
    """The row hash a new event gets: keyed, over its content and `prev_hash`."""
    return keyed_chain_hash(event.prev_hash, payload_of(event), chain_key())


def row_version(event: AuditEvent) -> int | None:
    """Which chain version the row's hash matches (2 keyed, 1 legacy), or None when it
    matches neither: the row was altered, or written without the key."""
    if hmac.compare_digest(seal(event), event.row_hash):
        return CHAIN_VERSION
    legacy = chain_hash(event.prev_hash, payload_of(event, version=LEGACY_VERSION))
    if hmac.compare_digest(legacy, event.row_hash):
        return LEGACY_VERSION
    return None
