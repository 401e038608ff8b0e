"""Embeddings are model calls too: document and query text go to an embedding backend only
if that backend may receive the text's tier.

One backend per deployment (`BROKER_EMBEDDING_PROVIDER`: `local`, the in-process MiniLM,
or the name of a configured provider with an `embedding_model`), because vectors from two
models cannot share an index: there is no failover between embedding backends. A
confidential document is never embedded by a provider whose `max_tier` is lower (or that
retains data); the call stops with ProviderUnavailable instead.
"""

from __future__ import annotations

from django.conf import settings

from app.identity import Tier
from broker import embeddings as local_embeddings
from broker.types import ProviderUnavailable


def embed_texts(
    texts: list[str], *, sensitivity: Tier, user_hash: str = "", request_id: str = ""
) -> list[list[float]]:
    """Embed `texts` (all of tier at most `sensitivity`) with the configured backend."""
    from broker.services import configured_providers, may_receive

    name = settings.BROKER_EMBEDDING_PROVIDER
    if name == "local":
        return local_embeddings.embed_texts(texts)
    provider = next((p for p in configured_providers() if p.name == name), None)
    if provider is None or not provider.config.embedding_model:
        raise ProviderUnavailable(f"embedding provider {name!r} is not configured for embeddings")
    if not may_receive(provider.config, sensitivity, ()):
        raise ProviderUnavailable(
            f"the embedding provider may not receive {sensitivity.label} data"
        )
    vectors: list[list[float]] = provider.adapter.embed(
        texts, user_hash=user_hash, request_id=request_id
    )
    return vectors


def embed_query(
    text: str, *, sensitivity: Tier, user_hash: str = "", request_id: str = ""
) -> list[float]:
    """Embed a search query with the same backend as the documents (one vector space). The
    caller passes the highest tier the query may carry (the asker's clearance)."""
    if settings.BROKER_EMBEDDING_PROVIDER == "local":
        return local_embeddings.embed_query(text)
    return embed_texts([text], sensitivity=sensitivity, user_hash=user_hash, request_id=request_id)[
        0
    ]
