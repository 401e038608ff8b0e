"""Reads of the audit trail (for investigators; never shown to end users)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet

from audit.models import AuditEvent


def events_touching_document(document_id: int) -> QuerySet[AuditEvent]:
    """Every event that showed document D to someone, or changed it or its ACL."""
    return AuditEvent.objects.filter(
        Q(metadata__contains={"context_documents": [document_id]})
        | Q(subject=f"document:{document_id}")
    ).order_by("id")


def events_between(since: datetime | None, until: datetime | None) -> QuerySet[AuditEvent]:
    events = AuditEvent.objects.order_by("id")
    if since is not None:
        events = events.filter(created_at__gte=since)
    if until is not None:
        events = events.filter(created_at__lt=until)
    return events


def as_json(event: AuditEvent) -> dict[str, Any]:
    """One event as a flat JSON object (JSONL export)."""
    return {
        "id": event.pk,
        "time": event.created_at.isoformat(),
        "request_id": event.request_id,
        "actor_id": event.actor_id,
        "token_id": event.token_id or None,
        "event_type": event.event_type,
        "subject": event.subject,
        "decision": event.decision,
        "reason": event.reason,
        "metadata": event.metadata,
        "prev_hash": event.prev_hash,
        "row_hash": event.row_hash,
    }


# OCSF 1.x "API Activity" (class 6003, category 6 "Application Activity"); the fields a SIEM
# indexes are mapped, the rest travels in `unmapped`.
_OCSF_CLASS_UID = 6003
_OCSF_CATEGORY_UID = 6


def as_ocsf(event: AuditEvent) -> dict[str, Any]:
    refused = event.decision in {"blocked", "denied", "refused"}
    return {
        "class_uid": _OCSF_CLASS_UID,
        "category_uid": _OCSF_CATEGORY_UID,
        "time": int(event.created_at.timestamp() * 1000),
        "activity_name": event.event_type,
        "status": "Failure" if refused else "Success",
        "status_detail": event.reason or event.decision,
        "actor": {"user": {"uid": str(event.actor_id) if event.actor_id is not None else None}},
        "api": {"operation": event.event_type, "request": {"uid": event.request_id}},
        "metadata": {
            "uid": str(event.pk),
            "correlation_uid": event.request_id,
            "product": {"name": "secure-genai-ref", "vendor_name": "secure-genai-ref"},
            "version": "1.1.0",
        },
        "unmapped": {
            "subject": event.subject,
            "token_id": event.token_id or None,
            "details": event.metadata,
            "row_hash": event.row_hash,
        },
    }
