"""Retention of conversations: deleted with their messages once untouched for longer than
the policy (RETENTION_CONVERSATION_DAYS), each batch in one transaction with its
`retention.purged` audit event. Then the audit trail gets a checkpoint (audit/retention.py)
so that its own old rows can later be purged by the owner while the chain still verifies.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from app.models import Conversation, Message
from audit.models import EventType
from audit.retention import audit_checkpoint_record
from audit.services import audit_record


@dataclass(frozen=True, slots=True)
class RetentionReport:
    conversations: int
    messages: int
    checkpoint_id: int | None


def conversations_purge(
    *, older_than: datetime, batch: int, request_id: str = ""
) -> tuple[int, int]:
    """Delete conversations last updated before `older_than`; return (conversations,
    messages) deleted. Each batch and its audit event commit together."""
    total_conversations = total_messages = 0
    while True:
        with transaction.atomic():
            ids = list(
                Conversation.objects.filter(updated_at__lt=older_than)
                .order_by("id")
                .select_for_update(skip_locked=True)
                .values_list("id", flat=True)[:batch]
            )
            if not ids:
                break
            messages = Message.objects.filter(conversation_id__in=ids).count()
            Conversation.objects.filter(id__in=ids).delete()
            audit_record(
                event_type=EventType.RETENTION_PURGED,
                actor_id=None,
                request_id=request_id,
                subject="conversations",
                decision="purged",
                reason="retention_policy",
                metadata={
                    "conversation_ids": ids,
                    "conversations": len(ids),
                    "messages": messages,
                    "older_than": older_than.isoformat(),
                },
            )
        total_conversations += len(ids)
        total_messages += messages
    return total_conversations, total_messages


def retention_run(*, now: datetime | None = None, request_id: str = "") -> RetentionReport:
    """Apply the retention policy once (the Celery beat task calls this)."""
    now = now or timezone.now()
    conversations = messages = 0
    days = settings.RETENTION_CONVERSATION_DAYS
    if days > 0:
        conversations, messages = conversations_purge(
            older_than=now - timedelta(days=days),
            batch=settings.RETENTION_BATCH,
            request_id=request_id,
        )
    checkpoint = None
    audit_days = settings.RETENTION_AUDIT_DAYS
    if audit_days > 0:
        checkpoint = audit_checkpoint_record(
            before=now - timedelta(days=audit_days), request_id=request_id
        )
    return RetentionReport(
        conversations=conversations,
        messages=messages,
        checkpoint_id=checkpoint.pk if checkpoint else None,
    )
