"""Audit events: metadata about decisions and data access — never raw prompts or PII."""

from __future__ import annotations

from django.contrib.postgres.indexes import GinIndex
from django.db import models
from django.utils import timezone


class EventType(models.TextChoices):
    """Every kind of audited event. Stored as text without a DB choices list, so adding a
    kind needs no migration; `audit_record` refuses names that are not listed here."""

    CHAT_TURN = "chat.turn"
    CHAT_BLOCKED = "chat.blocked"
    CHAT_FLAGGED = "chat.flagged"
    OUTPUT_REDACTED = "output.redacted"
    OUTPUT_BLOCKED = "output.blocked"
    CONTEXT_DROPPED = "context.dropped"
    TOOL_CALLED = "tool.called"
    TOOL_REFUSED = "tool.refused"
    PROVIDER_CALL = "provider.call"
    PROVIDER_FAILOVER = "provider.failover"
    PROVIDER_UNAVAILABLE = "provider.unavailable"
    BREAKER_CHANGED = "provider.breaker"
    BUDGET_EXCEEDED = "budget.exceeded"
    RATE_LIMITED = "rate.limited"
    ANOMALY_CHANGED = "anomaly.changed"
    TOKEN_ISSUED = "token.issued"  # noqa: S105 - an event name
    TOKEN_REVOKED = "token.revoked"  # noqa: S105 - an event name
    TOKEN_USED = "token.used"  # noqa: S105 - an event name
    LOGIN_SUCCEEDED = "login.succeeded"
    LOGIN_FAILED = "login.failed"
    MFA_CHANGED = "mfa.changed"
    DOCUMENT_INGESTED = "document.ingested"
    DOCUMENT_DELETED = "document.deleted"
    DOCUMENT_FLAGGED = "document.flagged"
    ACL_CHANGED = "acl.changed"
    RETRIEVAL_ACCESS = "retrieval.access"
    DOCUMENT_VIEWED = "document.viewed"
    BREAK_GLASS_OPENED = "break_glass.opened"
    ADMIN_VIEWED_USER_DATA = "admin.viewed_user_data"
    CONFIG_CHANGED = "config.changed"
    RETENTION_PURGED = "retention.purged"
    RETENTION_CHECKPOINT = "retention.checkpoint"
    KEYS_ROTATED = "keys.rotated"
    SSO_GROUPS_SYNCED = "sso.groups_synced"


class AuditEvent(models.Model):
    """Append-only (a trigger refuses UPDATE and DELETE) and hash-chained: each
    row's `row_hash` covers its content and the previous row's hash (audit/chain.py)."""

    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    request_id = models.CharField(max_length=64, blank=True)
    actor_id = models.BigIntegerField(null=True, blank=True, db_index=True)
    token_id = models.CharField(max_length=64, blank=True)
    event_type = models.CharField(max_length=48, db_index=True)
    subject = models.CharField(max_length=200, blank=True)
    decision = models.CharField(max_length=16, blank=True)
    reason = models.CharField(max_length=64, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    prev_hash = models.CharField(max_length=64)
    row_hash = models.CharField(max_length=64, unique=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # "Which events touched document D?" is a JSONB containment query.
            GinIndex(fields=["metadata"], name="audit_metadata_gin", opclasses=["jsonb_path_ops"]),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} #{self.pk}"
