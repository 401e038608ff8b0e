"""Stored live reviews: the staff page shows the latest one."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class LiveReview(models.Model):
    created_at = models.DateTimeField(db_index=True)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    catalogue_version = models.CharField(max_length=20)
    highest_severity = models.CharField(max_length=10)
    open_findings = models.PositiveIntegerField()
    attack_paths = models.PositiveIntegerField()
    report = models.JSONField()  # report_to_dict(...) plus the live description
    markdown = models.TextField()

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"live review {self.created_at:%Y-%m-%d %H:%M} ({self.highest_severity})"
