"""Writes of the orchestration layer: guard decisions, review flags, each with its audit
event in the same transaction."""

from __future__ import annotations

from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from app.identity import Principal
from audit.models import EventType
from audit.services import audit_record
from orchestration.models import DocumentReviewFlag


def guard_event_record(
    *,
    principal: Principal,
    event_type: EventType,
    decision: str,
    reason: str,
    subject: str = "",
    metadata: dict[str, Any] | None = None,
) -> None:
    """Audit one guard decision: scores, rule ids, counts — never the text."""
    audit_record(
        event_type=event_type,
        actor_id=principal.user_id,
        request_id=principal.request_id,
        token_id=principal.token_id,
        subject=subject,
        decision=decision,
        reason=reason,
        metadata=metadata or {},
    )


def document_flag_create(
    *,
    principal: Principal,
    document_id: int,
    chunk_id: int,
    document_version: int,
    reason: str,
    scores: dict[str, Any],
) -> DocumentReviewFlag | None:
    """Flag a document for review because one of its chunks was dropped; audited. A chunk
    with an open flag already is not flagged twice (returns None)."""
    try:
        with transaction.atomic():
            flag = DocumentReviewFlag.objects.create(
                document_id=document_id,
                chunk_id=chunk_id,
                document_version=document_version,
                reason=reason,
                scores=scores,
            )
            audit_record(
                event_type=EventType.DOCUMENT_FLAGGED,
                actor_id=principal.user_id,
                request_id=principal.request_id,
                subject=f"document:{document_id}",
                decision="flagged",
                reason=reason,
                metadata={"document": document_id, "chunk": chunk_id, **scores},
            )
            return flag
    except IntegrityError:
        return None


def document_flag_review(*, flag: DocumentReviewFlag, status: str, admin_id: int) -> None:
    with transaction.atomic():
        flag.status = status
        flag.reviewed_by_id = admin_id
        flag.reviewed_at = timezone.now()
        flag.save(update_fields=["status", "reviewed_by", "reviewed_at"])
        audit_record(
            event_type=EventType.DOCUMENT_FLAGGED,
            actor_id=admin_id,
            subject=f"document:{flag.document_id}",
            decision=status,
            reason="admin_review",
            metadata={"document": flag.document_id, "chunk": flag.chunk_id},
        )


def chunk_review_status(chunk_ids: list[int]) -> dict[int, str]:
    """The latest review status of each chunk that has a flag."""
    status: dict[int, str] = {}
    for chunk_id, value in (
        DocumentReviewFlag.objects.filter(chunk_id__in=chunk_ids)
        .order_by("created_at")
        .values_list("chunk_id", "status")
    ):
        status[chunk_id] = value
    return status
