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
