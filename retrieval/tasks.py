"""Celery tasks: thin wrappers over retrieval.services."""

from __future__ import annotations

from celery import shared_task

from retrieval.services import document_index, document_mark_failed


@shared_task(name="retrieval.index_document", acks_late=True)
def index_document(document_id: int) -> int:
    try:
        document_index(document_id=document_id)
    except Exception as exc:
        document_mark_failed(
            document_id=document_id, error=f"indexing failed: {type(exc).__name__}"
        )
        raise
    return document_id
