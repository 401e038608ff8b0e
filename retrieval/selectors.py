"""Reads. Every read of documents or chunks takes the Principal and applies the ACL in SQL:
clearance >= tier AND (granted to the user OR to one of their groups OR to everyone)."""

from __future__ import annotations

from dataclasses import dataclass

from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from pgvector.django import CosineDistance

from app.identity import Principal, Tier
from retrieval.models import Chunk, Document

HNSW_EF_SEARCH = 100


def documents_visible_to(principal: Principal) -> QuerySet[Document]:
    user_grant = Document.allowed_users.through.objects.filter(
        document_id=OuterRef("pk"), user_id=principal.user_id
    )
    group_grant = Document.allowed_groups.through.objects.filter(
        document_id=OuterRef("pk"), group_id__in=principal.group_ids
    )
    return Document.objects.filter(
        classification__lte=int(principal.clearance),
        status=Document.Status.READY,
    ).filter(Q(all_authenticated=True) | Exists(user_grant) | Exists(group_grant))


def document_get_visible(principal: Principal, document_id: int) -> Document | None:
    """The document if this principal may read it; None otherwise (callers answer 404)."""
    return documents_visible_to(principal).filter(pk=document_id).first()


def visible_document_ids(principal: Principal, document_ids: set[int]) -> set[int]:
    if not document_ids:
        return set()
    return set(
        documents_visible_to(principal).filter(pk__in=document_ids).values_list("pk", flat=True)
    )


@dataclass(frozen=True, slots=True)
class ChunkHit:
    chunk_id: int
    document_id: int
    title: str
    tier: Tier
    text: str
    score: float
    document_version: int


def chunks_search(principal: Principal, query_embedding: list[float], *, k: int) -> list[ChunkHit]:
    """Top-k chunks by cosine similarity among those the principal may read."""
    with transaction.atomic(), connection.cursor() as cursor:
        # pgvector 0.8: keep scanning the HNSW graph until k rows pass the ACL filter.
        cursor.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
        cursor.execute("SET LOCAL hnsw.ef_search = %s", [max(HNSW_EF_SEARCH, k)])
        rows = list(
            Chunk.objects.filter(document__in=documents_visible_to(principal))
            .annotate(distance=CosineDistance("embedding", query_embedding))
            .order_by("distance")
            .values(
                "id",
                "document_id",
                "document__title",
                "document__classification",
                "document__version",
                "text",
                "distance",
            )[:k]
        )
    rows.sort(key=lambda r: r["distance"])
    return [
        ChunkHit(
            chunk_id=r["id"],
            document_id=r["document_id"],
            title=r["document__title"],
            tier=Tier(r["document__classification"]),
            text=r["text"],
            score=round(1.0 - float(r["distance"]), 4),
            document_version=r["document__version"],
        )
        for r in rows
    ]
