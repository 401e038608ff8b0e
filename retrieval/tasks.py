"""Celery tasks: thin wrappers over retrieval.services."""

from __future__ import annotations

from celery import shared_task

from retrieval.services import ingestion_run


@shared_task(name="retrieval.run_ingestion_job", acks_late=True)
def run_ingestion_job(job_id: int) -> str:
    return ingestion_run(job_id=job_id).state
