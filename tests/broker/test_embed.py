"""Embedding calls are routed by the text's tier like chat calls."""

from __future__ import annotations

import pytest

from app.identity import Tier
from broker.embed import embed_texts
from broker.types import ProviderUnavailable
from tests.broker.conftest import provider_entry

SECRET_DOC = "Project Halvorsen acquisition terms: 48.2 million."


def test_provider_embeddings_go_through_the_sdk_with_identity(loopback, use_providers, settings):
    use_providers([provider_entry(loopback, "emb", "openai", embedding_model="text-emb-x")])
    settings.BROKER_EMBEDDING_PROVIDER = "emb"
    vectors = embed_texts(["a", "b"], sensitivity=Tier.INTERNAL, user_hash="h1", request_id="r9")
    assert len(vectors) == 2
    (seen,) = loopback.recorded
    assert seen.path == "/v1/embeddings"
    assert seen.body["model"] == "text-emb-x"
    assert seen.body["user"] == "h1"
    assert seen.headers["x-request-id"] == "r9"


def test_a_confidential_document_is_never_embedded_by_a_lower_tier_provider(
    loopback, use_providers, settings
):
    use_providers([provider_entry(loopback, "emb", "openai", embedding_model="text-emb-x")])
    settings.BROKER_EMBEDDING_PROVIDER = "emb"
    with pytest.raises(ProviderUnavailable, match="confidential"):
        embed_texts([SECRET_DOC], sensitivity=Tier.CONFIDENTIAL)
    assert loopback.recorded == []


def test_the_local_backend_embeds_in_process(settings):
    settings.BROKER_EMBEDDING_PROVIDER = "local"
    (vector,) = embed_texts([SECRET_DOC], sensitivity=Tier.RESTRICTED)
    assert len(vector) == 384


@pytest.mark.django_db
def test_indexing_routes_a_documents_text_by_its_tier(loopback, use_providers, settings):
    """The ingestion job embeds through the broker: an internal document reaches the
    internal-tier embedding provider, a confidential one never does (its job fails)."""
    from retrieval.models import Document
    from retrieval.services import document_create, ingestion_run, ingestion_submit

    use_providers([provider_entry(loopback, "emb", "openai", embedding_model="text-emb-x")])
    settings.BROKER_EMBEDDING_PROVIDER = "emb"
    jobs = {}
    for tier in (Tier.INTERNAL, Tier.CONFIDENTIAL):
        document = document_create(
            title=f"{tier.label} terms",
            classification=tier,
            source_name="terms.txt",
            data=f"{SECRET_DOC} ({tier.label})".encode(),
            all_authenticated=True,
        )
        jobs[tier] = ingestion_run(
            job_id=ingestion_submit(document_id=document.pk, actor_id=None).pk
        )
    assert jobs[Tier.INTERNAL].state == "succeeded"
    assert jobs[Tier.CONFIDENTIAL].state == "failed"
    sent = [str(r.body.get("input")) for r in loopback.recorded]
    assert any("(internal)" in s for s in sent)
    assert not any("(confidential)" in s for s in sent)
    confidential = Document.objects.get(title="confidential terms")
    assert not confidential.chunks.exists()
