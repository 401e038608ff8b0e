"""Celery tasks owned by `app`: thin wrappers over its services."""

from __future__ import annotations

from celery import shared_task

from app.retention import retention_run as run_retention


@shared_task(name="app.retention_run")
def retention_run() -> dict[str, int | None]:
    report = run_retention()
    return {
        "conversations": report.conversations,
        "messages": report.messages,
        "checkpoint_id": report.checkpoint_id,
    }
