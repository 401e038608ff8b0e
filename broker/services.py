"""The broker: every model call goes through here, and it alone picks the provider.

First cut: the configured providers are just the offline local provider. Routing already
re-checks the request's sensitivity against each provider's `max_tier` itself.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterator
from functools import lru_cache

from django.conf import settings

from app.identity import Tier
from broker.local import LocalProvider
from broker.types import CompletionRequest, Provider, ProviderUnavailable, StreamEvent


@lru_cache(maxsize=1)
def configured_providers() -> tuple[Provider, ...]:
    return (LocalProvider(max_tier=Tier.parse(settings.LOCAL_PROVIDER_MAX_TIER)),)


def user_hash(user_id: int) -> str:
    """A keyed hash of the user id: lets a provider tell users apart, reveals nobody."""
    key = hmac.new(settings.SECRET_KEY.encode(), b"provider-user-id", hashlib.sha256).digest()
    return hmac.new(key, str(user_id).encode(), hashlib.sha256).hexdigest()[:32]


def allowed_providers(sensitivity: Tier) -> list[Provider]:
    return [p for p in configured_providers() if p.max_tier >= sensitivity]


def usable_provider_count() -> int:
    return len(configured_providers())


def complete_stream(request: CompletionRequest) -> Iterator[StreamEvent]:
    """Stream a completion from the first provider allowed for the request's sensitivity."""
    candidates = allowed_providers(request.sensitivity)
    if not candidates:
        raise ProviderUnavailable(
            f"no model provider is allowed to receive {request.sensitivity.label} data"
        )
    return candidates[0].stream(request)
