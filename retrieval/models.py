"""Documents, their access-control lists, and their embedded chunks."""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.postgres.fields import ArrayField
from django.contrib.postgres.indexes import GinIndex
from django.contrib.postgres.search import SearchVectorField
from django.db import models
from pgvector.django import HnswIndex, VectorField

from app.identity import Tier
from broker.embeddings import EMBEDDING_DIM
from retrieval.rls import PRIVILEGED_GRANT


class Document(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending"
        READY = "ready"
        FAILED = "failed"

    title = models.CharField(max_length=300)
    classification = models.PositiveSmallIntegerField(choices=Tier.choices())
    all_authenticated = models.BooleanField(
        default=False, help_text="Readable by every signed-in user whose clearance allows it."
    )
    allowed_users = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="granted_documents"
    )
    allowed_groups = models.ManyToManyField(Group, blank=True, related_name="granted_documents")
    source_name = models.CharField(max_length=300, blank=True)
    text = models.TextField(blank=True)
    content_sha256 = models.CharField(max_length=64, blank=True)
    version = models.PositiveIntegerField(default=1)
    # Set by the ingestion PII scan: how many of each kind of PII the text holds (never the
    # values), and the tier that suggests. The scan never changes `classification`.
    pii_kinds = models.JSONField(default=dict, blank=True, editable=False)
    suggested_classification = models.PositiveSmallIntegerField(
        choices=Tier.choices(), null=True, blank=True, editable=False
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    error = models.CharField(max_length=300, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes = [
            models.Index(fields=["classification", "status"]),
            models.Index(
                fields=["classification"],
                condition=models.Q(all_authenticated=True),
                name="document_open_tier",
            ),
        ]

    def __str__(self) -> str:
        return self.title

    @property
    def tier(self) -> Tier:
        return Tier(self.classification)

    @property
    def tier_below_suggestion(self) -> bool:
        """The PII scan suggests a higher tier than the one chosen: an admin should look."""
        return (
            self.suggested_classification is not None
            and self.suggested_classification > self.classification
        )


def privileged_only() -> list[str]:
    """A new passage's access until the triggers add its chunks': only a privileged scope
    sees it (retrieval.rls.PRIVILEGED_GRANT)."""
    return [PRIVILEGED_GRANT]


class Passage(models.Model):
    """One distinct chunk text and its embedding: the HNSW graph holds each text once.

    Copies of a text (the same disclaimer in fifty documents, a page stored twice) used to be
    one graph node each; a clique of identical vectors links only to itself, and a search
    that walks into it cannot leave (docs/BENCHMARKS.md). Chunks point at their passage.

    `access` is the union of the chunks' access as tokens that each carry their own tier
    ("a@1": everyone signed in, at tier 1; "u7@2": user 7, tier 2; "g3@0": group 3, tier 0),
    so one array overlap with the principal's tokens (retrieval.rls.access_tokens) tells
    whether any chunk holding this text is visible, with no join (and "*", which only a
    privileged scope holds, is on every passage). Database triggers
    (retrieval migration 0009) keep it in step with the chunks and delete a passage when its
    last chunk goes; row-level security applies the same overlap."""

    digest = models.CharField(max_length=64, unique=True, editable=False)
    embedding = VectorField(dimensions=EMBEDDING_DIM)
    access = ArrayField(models.TextField(), default=privileged_only, editable=False)

    class Meta:
        indexes = [
            # m 32 / ef_construction 128: see the notes on migrations 0008 and 0010 and
            # docs/BENCHMARKS.md.
            HnswIndex(
                name="passage_embedding_hnsw",
                fields=["embedding"],
                m=32,
                ef_construction=128,
                opclasses=["vector_cosine_ops"],
            ),
            GinIndex(fields=["access"], name="passage_access_gin", fastupdate=False),
        ]

    def __str__(self) -> str:
        return self.digest[:12]


class Chunk(models.Model):
    """A piece of a document: its text, full-text vector and (through `passage`) embedding.

    The access columns (`tier`, `all_authenticated`, `readable_user_ids`,
    `readable_group_ids`) copy the document's tier and ACL onto every chunk, so that the SQL
    filter and the row-level-security policy are predicates on the chunk row itself, which
    a filtered HNSW scan can apply row by row. Database triggers (retrieval migration 0004)
    fill them on insert and keep them in step with every change of the document's tier or
    ACL, whatever path makes it; values written by the application are overwritten."""

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    position = models.PositiveIntegerField()
    text = models.TextField()
    passage = models.ForeignKey(Passage, on_delete=models.PROTECT, related_name="chunks")
    search_vector = SearchVectorField(null=True)
    tier = models.PositiveSmallIntegerField(default=int(Tier.RESTRICTED), editable=False)
    all_authenticated = models.BooleanField(default=False, editable=False)
    readable_user_ids = ArrayField(models.BigIntegerField(), default=list, editable=False)
    readable_group_ids = ArrayField(models.IntegerField(), default=list, editable=False)

    class Meta:
        ordering = ["document_id", "position"]
        constraints = [
            models.UniqueConstraint(fields=["document", "position"], name="chunk_position_unique")
        ]
        indexes = [
            # Every search reads these three. Without fastupdate, an insert goes straight
            # into the index instead of a pending list that each search must scan in full
            # until (auto)vacuum merges it: after a 100k-chunk load that list cost a 0.1%
            # query 10 of its 23 ms (docs/BENCHMARKS.md).
            GinIndex(fields=["search_vector"], name="chunk_search_gin", fastupdate=False),
            GinIndex(
                fields=["readable_group_ids"], name="chunk_readable_groups_gin", fastupdate=False
            ),
            GinIndex(
                fields=["readable_user_ids"], name="chunk_readable_users_gin", fastupdate=False
            ),
            models.Index(fields=["tier"], name="chunk_tier"),
            models.Index(
                fields=["tier"],
                condition=models.Q(all_authenticated=True),
                name="chunk_public_tier",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.document_id}#{self.position}"


class PendingUpload(models.Model):
    """The bytes of an uploaded file waiting for the ingestion worker to extract and index
    them (one per document: a newer upload replaces an older one still waiting). Removed
    when that version is indexed. Readable only in a privileged scope (row-level security,
    retrieval migration 0006)."""

    document = models.OneToOneField(Document, on_delete=models.CASCADE, related_name="pending")
    source_name = models.CharField(max_length=300)
    data = models.BinaryField()
    sha256 = models.CharField(max_length=64)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"{self.source_name} for document {self.document_id}"


class IngestionJob(models.Model):
    """One run of the indexing pipeline for a document, with its progress for admins and
    the API. A failed job can be retried; the document keeps its last good chunks."""

    class State(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        SUCCEEDED = "succeeded"
        FAILED = "failed"

    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="jobs")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    error = models.CharField(max_length=300, blank=True)
    attempts = models.PositiveSmallIntegerField(default=0)
    created_by_id = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"job {self.pk} ({self.state})"
