"""Guardrail state: documents flagged for review, and per-user anomaly state."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone


class DocumentReviewFlag(models.Model):
    """A retrieved chunk of this document looked like an injection; its chunks are dropped
    from context until nothing changes that (the flag is for a human to review)."""

    class Status(models.TextChoices):
        OPEN = "open"
        CLEARED = "cleared"
        CONFIRMED = "confirmed"

    document = models.ForeignKey(
        "retrieval.Document", on_delete=models.CASCADE, related_name="review_flags"
    )
    chunk_id = models.BigIntegerField()
    document_version = models.IntegerField(default=1)
    reason = models.CharField(max_length=64)
    scores = models.JSONField(default=dict)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.OPEN)
    created_at = models.DateTimeField(default=timezone.now)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    reviewed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            # One open flag per chunk and version: re-retrieving it does not pile up rows.
            models.UniqueConstraint(
                fields=["chunk_id", "document_version"],
                condition=models.Q(status="open"),
                name="one_open_flag_per_chunk",
            )
        ]

    def __str__(self) -> str:
        return f"flag doc={self.document_id} chunk={self.chunk_id} ({self.status})"


class AnomalyState(models.Model):
    """The durable side of runtime anomaly detection (the rolling score lives in Redis)."""

    class State(models.TextChoices):
        NORMAL = "normal"
        THROTTLED = "throttled"
        LOCKED = "locked"

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="anomaly_state"
    )
    state = models.CharField(max_length=16, choices=State.choices, default=State.NORMAL)
    score = models.FloatField(default=0)
    reason = models.CharField(max_length=64, blank=True)
    changed_at = models.DateTimeField(default=timezone.now)
    reviewed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    def __str__(self) -> str:
        return f"{self.user_id}: {self.state}"
