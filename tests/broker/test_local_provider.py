"""The offline local provider and the broker's routing by sensitivity."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from app.identity import Tier
from broker import services as broker
from broker.local import NO_ANSWER, LocalProvider, compose_answer
from broker.types import (
    Completion,
    CompletionRequest,
    ContextChunk,
    ProviderUnavailable,
    TokenDelta,
)

_MARKER = re.compile(r"\[(\d+)\]")

PER_DIEM = ContextChunk(
    marker=7,
    chunk_id=701,
    document_id=70,
    title="Travel and Expense Policy",
    text="## Meals\n\nThe travel per diem for meals is 75 EUR per day in all EU cities.",
    tier=Tier.INTERNAL,
)
HOTELS = ContextChunk(
    marker=8,
    chunk_id=801,
    document_id=70,
    title="Travel and Expense Policy",
    text="Hotel bookings for travel must go through the approved agency portal.",
    tier=Tier.INTERNAL,
)
FAILOVER = ContextChunk(
    marker=9,
    chunk_id=901,
    document_id=90,
    title="PostgreSQL Failover Runbook",
    text="Promote the standby with pg_ctl promote once replication lag is below one second.",
    tier=Tier.INTERNAL,
)


def _request(
    message: str,
    context: tuple[ContextChunk, ...] = (),
    sensitivity: Tier = Tier.INTERNAL,
) -> CompletionRequest:
    return CompletionRequest(
        system="system prompt",
        user_message=message,
        context=context,
        sensitivity=sensitivity,
        user_hash=broker.user_hash(1),
        request_id="req-local-provider",
    )


@pytest.fixture
def local_max_tier(settings) -> Iterator[object]:
    """Set LOCAL_PROVIDER_MAX_TIER for one test; the provider list is cached, so clear it."""

    def set_tier(tier: str) -> None:
        settings.LOCAL_PROVIDER_MAX_TIER = tier
        broker.configured_providers.cache_clear()

    yield set_tier
    broker.configured_providers.cache_clear()


# --- compose_answer / LocalProvider.stream -------------------------------------------------


def test_compose_answer_cites_only_markers_of_the_supplied_context():
    context = (PER_DIEM, HOTELS, FAILOVER)
    text, markers = compose_answer("What is the travel per diem for meals?", context)
    supplied = {c.marker for c in context}
    assert 7 in markers
    assert set(markers) <= supplied
    assert 9 not in markers  # the unrelated chunk shares no terms with the question
    assert {int(m) for m in _MARKER.findall(text)} == set(markers)
    assert "75 EUR" in text


def test_compose_answer_without_context_is_no_answer_without_citations():
    assert compose_answer("What is the travel per diem?", ()) == (NO_ANSWER, [])


def test_compose_answer_with_unrelated_context_is_no_answer_without_citations():
    text, markers = compose_answer("quarterly revenue forecast", (FAILOVER,))
    assert (text, markers) == (NO_ANSWER, [])
    assert not _MARKER.search(text)


def test_stream_deltas_concatenate_to_the_completion_text_and_end_with_one_completion():
    events = list(
        LocalProvider().stream(_request("What is the travel per diem?", (PER_DIEM, HOTELS)))
    )
    assert len(events) > 2
    assert isinstance(events[-1], Completion)
    assert sum(isinstance(e, Completion) for e in events) == 1
    deltas = events[:-1]
    assert all(isinstance(e, TokenDelta) for e in deltas)
    completion = events[-1]
    assert "".join(d.text for d in deltas) == completion.text
    assert set(completion.cited_markers) <= {PER_DIEM.marker, HOTELS.marker}
    assert PER_DIEM.marker in completion.cited_markers
    assert completion.provider == "local"
    assert completion.labels == ("extractive",)


def test_stream_without_context_completes_with_no_answer_and_no_citations():
    events = list(LocalProvider().stream(_request("What is the travel per diem?")))
    completion = events[-1]
    assert isinstance(completion, Completion)
    assert completion.text == NO_ANSWER
    assert completion.cited_markers == ()
    assert "".join(e.text for e in events[:-1] if isinstance(e, TokenDelta)) == NO_ANSWER


# --- broker routing ---------------------------------------------------------------------------


def test_allowed_providers_excludes_provider_below_the_sensitivity(local_max_tier):
    local_max_tier("internal")
    assert [p.name for p in broker.allowed_providers(Tier.PUBLIC)] == ["local"]
    assert [p.name for p in broker.allowed_providers(Tier.INTERNAL)] == ["local"]
    assert broker.allowed_providers(Tier.CONFIDENTIAL) == []
    assert broker.allowed_providers(Tier.RESTRICTED) == []

    local_max_tier("restricted")
    assert [p.name for p in broker.allowed_providers(Tier.RESTRICTED)] == ["local"]


@pytest.mark.django_db  # the refusal is audited
def test_complete_stream_refuses_data_above_every_provider_tier(local_max_tier):
    local_max_tier("internal")
    with pytest.raises(ProviderUnavailable, match="confidential"):
        broker.complete_stream(
            _request("What is the travel per diem?", (PER_DIEM,), sensitivity=Tier.CONFIDENTIAL)
        )
    events = list(
        broker.complete_stream(
            _request("What is the travel per diem?", (PER_DIEM,), sensitivity=Tier.INTERNAL)
        )
    )
    assert isinstance(events[-1], Completion)


def test_user_hash_is_stable_keyed_and_hides_the_user_id(settings):
    user_id = 987654321
    first = broker.user_hash(user_id)
    assert first == broker.user_hash(user_id)
    assert re.fullmatch(r"[0-9a-f]{32}", first)
    assert str(user_id) not in first
    assert broker.user_hash(user_id + 1) != first

    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789abcdef"
    assert broker.user_hash(user_id) != first
