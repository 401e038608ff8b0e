"""Writes: creating documents, indexing them, changing their ACLs."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.contrib.postgres.search import SearchVector
from django.db import transaction
from langchain_text_splitters import RecursiveCharacterTextSplitter

from app.identity import Tier
from audit.models import EventType
from audit.services import audit_record
from broker.embed import embed_texts
from retrieval import extract
from retrieval.errors import IngestionRejected
from retrieval.models import Chunk, Document, IngestionJob, Passage, PendingUpload
from retrieval.rls import privileged_scope

CHUNK_SIZE_CHARS = 900
CHUNK_OVERLAP_CHARS = 150
EMBED_BATCH = 64


def precheck(*, name: str, data: bytes) -> None:
    """Cheap checks where a file is received (no parsing); IngestionRejected naming the
    file otherwise."""
    try:
        extract.precheck(name=name, data=data, max_bytes=settings.INGEST_MAX_BYTES)
    except IngestionRejected as exc:
        raise IngestionRejected(f"{name}: {exc}") from None


def extract_text(*, name: str, data: bytes) -> str:
    """The text of an uploaded file (parsed: run it in the ingestion worker only);
    IngestionRejected naming the file otherwise."""
    try:
        return extract.extract_text(name=name, data=data, max_bytes=settings.INGEST_MAX_BYTES)
    except IngestionRejected as exc:
        raise IngestionRejected(f"{name}: {exc}") from None


def split_text(text: str) -> list[str]:
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=CHUNK_SIZE_CHARS,
        chunk_overlap=CHUNK_OVERLAP_CHARS,
        separators=["\n## ", "\n### ", "\n\n", "\n", ". ", " ", ""],
    )
    return [c.strip() for c in splitter.split_text(text) if c.strip()]


def passage_digest(text: str) -> str:
    """The key of a text's passage: the embedding model and the text (a new model never
    reuses an old vector). Migration 0009 computes the same in SQL."""
    key = f"{settings.EMBEDDING_MODEL_SHA256}\n{text}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def _embed(
    items: list[tuple[str, str]], tier: Tier, on_progress: Callable[[int], None]
) -> dict[str, list[float]]:
    """Embed (digest, text) pairs in batches, through the broker: only a backend allowed
    the document's tier may embed it."""
    vectors: dict[str, list[float]] = {}
    for start in range(0, len(items), EMBED_BATCH):
        batch = items[start : start + EMBED_BATCH]
        embedded = embed_texts([text for _, text in batch], sensitivity=tier)
        vectors.update(zip((digest for digest, _ in batch), embedded, strict=True))
        on_progress(len(vectors))
    return vectors


def _passages_for(
    texts: dict[str, str], vectors: dict[str, list[float]], tier: Tier
) -> dict[str, int]:
    """Passage ids for every digest in `texts`, creating the missing ones. Call in a
    privileged scope. A passage that went away since the texts were looked up (its last
    document was deleted) is embedded again here. Concurrent indexing of documents that
    share a text needs no lock here: the triggers' update of the passage row waits for the
    other transaction and then counts its chunks too
    (test_two_documents_indexed_at_once_both_reach_their_shared_passage)."""
    Passage.objects.bulk_create(
        [Passage(digest=d, embedding=v) for d, v in vectors.items()], ignore_conflicts=True
    )
    rows = dict(Passage.objects.filter(digest__in=list(texts)).values_list("digest", "id"))
    gone = [(digest, texts[digest]) for digest in texts if digest not in rows]
    if gone:
        again = _embed(gone, tier, lambda done: None)
        for digest, vector in again.items():
            rows[digest] = Passage.objects.create(digest=digest, embedding=vector).pk
    return rows


def _resolve_acl(
    usernames: Iterable[str], group_names: Iterable[str]
) -> tuple[list[int], list[int]]:
    """Names to primary keys (sorted); unknown names are rejected, never ignored."""
    usernames, group_names = sorted(set(usernames)), sorted(set(group_names))
    users = dict(
        get_user_model().objects.filter(username__in=usernames).values_list("username", "pk")
    )
    groups = dict(Group.objects.filter(name__in=group_names).values_list("name", "pk"))
    missing = [u for u in usernames if u not in users] + [g for g in group_names if g not in groups]
    if missing:
        raise IngestionRejected(f"unknown users or groups in ACL: {', '.join(missing)}")
    return sorted(users.values()), sorted(groups.values())


def document_create(
    *,
    title: str,
    classification: Tier,
    source_name: str,
    data: bytes,
    allow_users: Iterable[str] = (),
    allow_groups: Iterable[str] = (),
    all_authenticated: bool = False,
    actor_id: int | None = None,
    request_id: str = "",
) -> Document:
    """Check and store a new document (state `pending`) with its file waiting for the
    ingestion worker, which extracts and indexes it (`document_index`)."""
    precheck(name=source_name, data=data)
    users, groups = _resolve_acl(allow_users, allow_groups)
    sha256 = hashlib.sha256(data).hexdigest()
    with privileged_scope("store an ingested document"):
        document = Document.objects.create(
            title=title.strip()[:300] or source_name,
            classification=classification,
            all_authenticated=all_authenticated,
            source_name=source_name,
        )
        PendingUpload.objects.create(
            document=document, source_name=source_name, data=data, sha256=sha256
        )
        document.allowed_users.set(users)
        document.allowed_groups.set(groups)
        audit_record(
            event_type=EventType.DOCUMENT_INGESTED,
            actor_id=actor_id,
            request_id=request_id,
            subject=f"document:{document.pk}",
            decision="accepted",
            metadata={
                "tier": Tier(classification).label,
                "sha256": sha256,
                "bytes": len(data),
                "users": users,
                "groups": groups,
                "all_authenticated": all_authenticated,
            },
        )
    return document


def document_replace_content(
    *,
    document_id: int,
    source_name: str,
    data: bytes,
    actor_id: int | None,
    request_id: str = "",
) -> tuple[Document, bool]:
    """Store a new version of a document's file for the ingestion worker. Returns the
    document and whether the content changed: the bytes already indexed, or already
    waiting, change nothing. The old version keeps serving until the worker has indexed the
    new one and swapped the chunks, text, hash and version in one transaction."""
    precheck(name=source_name, data=data)
    sha256 = hashlib.sha256(data).hexdigest()
    with privileged_scope("store a new version of a document"):
        document = Document.objects.select_for_update().get(pk=document_id)
        waiting = PendingUpload.objects.filter(document=document).values_list("sha256", flat=True)
        if sha256 in {document.content_sha256, *waiting}:
            return document, False
        PendingUpload.objects.update_or_create(
            document=document,
            defaults={"source_name": source_name, "data": data, "sha256": sha256},
        )
        audit_record(
            event_type=EventType.DOCUMENT_INGESTED,
            actor_id=actor_id,
            request_id=request_id,
            subject=f"document:{document.pk}",
            decision="new_version",
            metadata={
                "version": document.version + 1,  # the version it becomes once indexed
                "sha256": sha256,
                "previous_sha256": document.content_sha256,
                "bytes": len(data),
            },
        )
    return document, True


def document_index(
    *, document_id: int, on_progress: Callable[[int], None] | None = None
) -> Document:
    """Extract (when a file is waiting), scan, chunk and embed a document, then replace its
    chunks, text, hash and version in one transaction: readers see the old version or the
    new one, never neither or both. Without a waiting file, re-indexes the current text."""
    report = on_progress or (lambda percent: None)
    with privileged_scope("index a document"):
        document = Document.objects.get(pk=document_id)
        upload = PendingUpload.objects.filter(document=document).first()
    text = document.text
    if upload is not None:
        text = extract_text(name=upload.source_name, data=bytes(upload.data))
    pieces = split_text(text)
    report(10)
    pii_scan_record(document, pieces)
    report(20)
    # A text already indexed (in this document's previous version, or in another document)
    # keeps its embedding: only new texts are embedded.
    digests = [passage_digest(piece) for piece in pieces]
    texts = dict(zip(digests, pieces, strict=True))
    with privileged_scope("reuse the embeddings of texts already indexed"):
        known = set(Passage.objects.filter(digest__in=list(texts)).values_list("digest", flat=True))
    missing = [(digest, text) for digest, text in texts.items() if digest not in known]
    vectors = _embed(
        missing, document.tier, lambda done: report(20 + 70 * done // max(len(missing), 1))
    )
    with privileged_scope("replace a document's chunks"):
        document = Document.objects.select_for_update().get(pk=document_id)
        passages = _passages_for(texts, vectors, document.tier)
        Chunk.objects.filter(document=document).delete()
        Chunk.objects.bulk_create(
            Chunk(document=document, position=i, text=piece, passage_id=passages[digest])
            for i, (digest, piece) in enumerate(zip(digests, pieces, strict=True))
        )
        _refresh_search_vectors(document.pk)
        fields = ["status", "error", "updated_at"]
        if upload is not None and upload.sha256 != document.content_sha256:
            if document.content_sha256:
                document.version += 1  # the first indexed file is version 1
            document.text = text
            document.source_name = upload.source_name
            document.content_sha256 = upload.sha256
            fields += ["text", "source_name", "content_sha256", "version"]
        if upload is not None:
            # Only the file indexed here: a newer upload that arrived meanwhile stays queued.
            PendingUpload.objects.filter(document=document, sha256=upload.sha256).delete()
        document.status = Document.Status.READY
        document.error = ""
        document.save(update_fields=fields)
    return document


def pii_scan_record(document: Document, pieces: list[str]) -> dict[str, int]:
    """Scan each piece with Presidio (the guardrails' analyser), record the PII kinds and the
    suggested tier on the document, and audit a suggestion above the chosen tier. The
    admin's tier is never changed here, in either direction."""
    from orchestration.pii import pii_entities, suggest_tier  # loads once per process

    kinds: dict[str, int] = {}
    for piece in pieces:
        for kind, count in pii_entities(piece).items():
            kinds[kind] = kinds.get(kind, 0) + count
    suggested = suggest_tier(kinds)
    with privileged_scope("record a document's PII scan"):
        Document.objects.filter(pk=document.pk).update(
            pii_kinds=kinds, suggested_classification=None if suggested is None else int(suggested)
        )
        if suggested is not None and suggested > document.classification:
            audit_record(
                event_type=EventType.DOCUMENT_FLAGGED,
                actor_id=None,
                subject=f"document:{document.pk}",
                decision="flagged",
                metadata={
                    "reason": "tier_below_pii_suggestion",
                    "tier": Tier(document.classification).label,
                    "suggested": suggested.label,
                    "pii_kinds": sorted(kinds),
                },
            )
    return kinds


def _refresh_search_vectors(document_id: int) -> None:
    Chunk.objects.filter(document_id=document_id).update(
        search_vector=SearchVector("text", config="english")
    )


def document_mark_failed(*, document_id: int, error: str) -> None:
    """Record an indexing failure. A document that was indexed before keeps serving its
    last good chunks (status stays `ready`, the error is shown); one that never was is
    `failed`. Chunks are searchable exactly when their document is `ready`."""
    with privileged_scope("record an indexing failure"):
        has_chunks = Chunk.objects.filter(document_id=document_id).exists()
        Document.objects.filter(pk=document_id).update(
            status=Document.Status.READY if has_chunks else Document.Status.FAILED,
            error=error[:300],
        )


def ingestion_submit(*, document_id: int, actor_id: int | None) -> IngestionJob:
    """Queue indexing of a stored document; the task is sent only once the job commits."""
    from retrieval.tasks import run_ingestion_job  # tasks import services: break the cycle

    job = IngestionJob.objects.create(document_id=document_id, created_by_id=actor_id)
    transaction.on_commit(lambda: run_ingestion_job.delay(job.pk))
    return job


def ingestion_run(*, job_id: int) -> IngestionJob:
    """Run one job to the end. Failures are recorded on the job, never raised further."""
    job = IngestionJob.objects.get(pk=job_id)
    if job.state == IngestionJob.State.SUCCEEDED:
        return job  # a redelivered message: nothing to do
    IngestionJob.objects.filter(pk=job.pk).update(
        state=IngestionJob.State.RUNNING, progress=5, error="", attempts=job.attempts + 1
    )

    def progress(percent: int) -> None:
        IngestionJob.objects.filter(pk=job.pk).update(progress=min(percent, 99))

    try:
        document_index(document_id=job.document_id, on_progress=progress)
    except Exception as exc:
        if isinstance(exc, IngestionRejected):
            error = f"rejected: {exc}"  # the file itself: a reason safe to show
        else:
            error = f"indexing failed: {type(exc).__name__}"
        document_mark_failed(document_id=job.document_id, error=error)
        IngestionJob.objects.filter(pk=job.pk).update(
            state=IngestionJob.State.FAILED, error=error[:300]
        )
    else:
        IngestionJob.objects.filter(pk=job.pk).update(
            state=IngestionJob.State.SUCCEEDED, progress=100
        )
    job.refresh_from_db()
    return job


def ingestion_retry(*, job: IngestionJob, actor_id: int | None) -> IngestionJob:
    if job.state != IngestionJob.State.FAILED:
        raise IngestionRejected("only a failed job can be retried")
    return ingestion_submit(document_id=job.document_id, actor_id=actor_id)


def acl_snapshot(document_id: int) -> dict[str, Any]:
    """A document's access settings as stored now (for old/new audit records)."""
    with privileged_scope("read a document's ACL for the audit trail"):
        row = Document.objects.filter(pk=document_id).values("classification", "all_authenticated")[
            0
        ]
        return {
            "tier": Tier(row["classification"]).label,
            "all_authenticated": row["all_authenticated"],
            "users": sorted(
                Document.allowed_users.through.objects.filter(document_id=document_id).values_list(
                    "user_id", flat=True
                )
            ),
            "groups": sorted(
                Document.allowed_groups.through.objects.filter(document_id=document_id).values_list(
                    "group_id", flat=True
                )
            ),
        }


def acl_change_record(
    *,
    document_id: int,
    old: dict[str, Any],
    actor_id: int | None,
    request_id: str = "",
) -> bool:
    """Audit a change of tier or ACL (old/new) if there was one; call it last, inside the
    transaction that made the change. Returns whether anything changed."""
    new = acl_snapshot(document_id)
    if new == old:
        return False
    audit_record(
        event_type=EventType.ACL_CHANGED,
        actor_id=actor_id,
        request_id=request_id,
        subject=f"document:{document_id}",
        decision="changed",
        metadata={"old": old, "new": new},
    )
    return True


def document_acl_update(
    *,
    document: Document,
    allow_users: Iterable[str],
    allow_groups: Iterable[str],
    all_authenticated: bool,
    actor_id: int | None,
    request_id: str = "",
) -> Document:
    """Replace a document's ACL; effective on the next query, no re-indexing."""
    users, groups = _resolve_acl(allow_users, allow_groups)
    with privileged_scope("change a document's ACL"):
        old = acl_snapshot(document.pk)
        document.allowed_users.set(users)
        document.allowed_groups.set(groups)
        document.all_authenticated = all_authenticated
        document.save(update_fields=["all_authenticated", "updated_at"])
        acl_change_record(
            document_id=document.pk, old=old, actor_id=actor_id, request_id=request_id
        )
    return document


def document_delete(*, document: Document, actor_id: int | None, request_id: str = "") -> None:
    """Delete a document and its chunks; citations to it then show as no longer available."""
    with privileged_scope("delete a document"):
        snapshot = acl_snapshot(document.pk)
        document_id = document.pk
        chunks = Chunk.objects.filter(document_id=document_id).count()
        document.delete()
        audit_record(
            event_type=EventType.DOCUMENT_DELETED,
            actor_id=actor_id,
            request_id=request_id,
            subject=f"document:{document_id}",
            decision="deleted",
            metadata={"acl": snapshot, "chunks": chunks},
        )
