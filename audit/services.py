"""Writing audit events. Callers write them inside the transaction of the change."""

from __future__ import annotations

from typing import Any

from audit.models import AuditEvent, EventType


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
    return AuditEvent.objects.create(
        event_type=event_type,
        actor_id=actor_id,
        request_id=request_id,
        token_id=token_id or "",
        subject=subject,
        decision=decision,
        reason=reason,
        metadata=metadata or {},
    )
