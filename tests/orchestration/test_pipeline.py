"""The pipeline's steps in isolation over a Turn, and prepare_turn on the seeded demo."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from app.identity import ALL_SCOPES, Principal, Tier
from broker import services as broker
from broker.types import Completion, ContextChunk, ProviderUnavailable
from orchestration.errors import Blocked, InputRejected
from orchestration.pipeline import (
    Turn,
    decide_policy,
    filter_context,
    prepare_turn,
    validate_input,
    validate_output,
)
from retrieval.models import Document


def _principal(
    clearance: Tier = Tier.INTERNAL, scopes: frozenset[str] = ALL_SCOPES, **extra: object
) -> Principal:
    values: dict[str, object] = {
        "user_id": 4242,
        "username": "tester",
        "groups": ("engineering",),
        "group_ids": (1,),
        "clearance": clearance,
        "scopes": scopes,
        "request_id": "req-pipeline-test",
    }
    values.update(extra)
    return Principal(**values)  # type: ignore[arg-type]


def _chunk(marker: int, tier: Tier) -> ContextChunk:
    return ContextChunk(
        marker=marker,
        chunk_id=100 + marker,
        document_id=10 + marker,
        title=f"Document {marker}",
        text=f"Passage {marker} at tier {tier.label}.",
        tier=tier,
    )


ALL_TIER_CONTEXT = (
    _chunk(1, Tier.PUBLIC),
    _chunk(2, Tier.INTERNAL),
    _chunk(3, Tier.CONFIDENTIAL),
    _chunk(4, Tier.RESTRICTED),
)


@pytest.fixture
def local_max_tier(settings) -> Iterator[object]:
    def set_tier(tier: str) -> None:
        settings.LOCAL_PROVIDER_MAX_TIER = tier
        broker.configured_providers.cache_clear()

    set_tier("restricted")
    yield set_tier
    broker.configured_providers.cache_clear()


# 1 validate_input ---------------------------------------------------------------------------


def test_validate_input_strips_surrounding_whitespace():
    turn = validate_input(Turn(principal=_principal(), message="  \n\t hello there \n "))
    assert turn.message == "hello there"


@pytest.mark.parametrize("message", ["", "   ", "\n\t\r\n "])
def test_validate_input_rejects_empty_message(message):
    with pytest.raises(InputRejected) as rejected:
        validate_input(Turn(principal=_principal(), message=message))
    assert rejected.value.code == "empty_message"


def test_validate_input_enforces_the_length_limit_after_stripping(settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 20
    assert validate_input(Turn(principal=_principal(), message="x" * 20)).message == "x" * 20
    assert validate_input(Turn(principal=_principal(), message=f"  {'x' * 20}  ")).message
    with pytest.raises(InputRejected) as rejected:
        validate_input(Turn(principal=_principal(), message="x" * 21))
    assert rejected.value.code == "message_too_long"
    assert "20" in rejected.value.detail


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\x0b"])
def test_validate_input_rejects_control_characters(char):
    with pytest.raises(InputRejected) as rejected:
        validate_input(Turn(principal=_principal(), message=f"hello{char}world"))
    assert rejected.value.code == "invalid_characters"


def test_validate_input_allows_newline_tab_and_carriage_return():
    message = "first line\nsecond\tcolumn\r\nthird line"
    assert validate_input(Turn(principal=_principal(), message=message)).message == message


# 5 filter_context ---------------------------------------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("clearance", "kept"),
    [
        (Tier.PUBLIC, [1]),
        (Tier.INTERNAL, [1, 2]),
        (Tier.CONFIDENTIAL, [1, 2, 3]),
        (Tier.RESTRICTED, [1, 2, 3, 4]),
    ],
)
def test_filter_context_drops_chunk_above_clearance(clearance, kept):
    turn = Turn(principal=_principal(clearance), message="q", context=ALL_TIER_CONTEXT)
    filtered = filter_context(turn)
    assert [c.marker for c in filtered.context] == kept
    assert all(c.tier <= clearance for c in filtered.context)


@pytest.mark.django_db
def test_filter_context_drops_chunk_above_clearance_even_when_it_is_the_only_one():
    turn = Turn(
        principal=_principal(Tier.INTERNAL),
        message="q",
        context=(_chunk(1, Tier.RESTRICTED),),
    )
    assert filter_context(turn).context == ()


# 7 decide_policy ----------------------------------------------------------------------------


def test_decide_policy_blocks_credential_without_chat_scope(local_max_tier):
    turn = Turn(principal=_principal(scopes=frozenset({"search", "documents"})), message="q")
    with pytest.raises(Blocked) as blocked:
        decide_policy(turn)
    assert blocked.value.reason_code == "scope_missing"
    assert blocked.value.user_message


def test_decide_policy_sets_sensitivity_to_the_highest_context_tier(local_max_tier):
    context = (_chunk(1, Tier.PUBLIC), _chunk(3, Tier.CONFIDENTIAL), _chunk(2, Tier.INTERNAL))
    turn = decide_policy(Turn(principal=_principal(Tier.RESTRICTED), message="q", context=context))
    assert turn.sensitivity is Tier.CONFIDENTIAL
    assert turn.provider_candidates == ("local",)


def test_decide_policy_never_lowers_the_turn_sensitivity(local_max_tier):
    turn = Turn(
        principal=_principal(Tier.RESTRICTED),
        message="q",
        sensitivity=Tier.RESTRICTED,
        context=(_chunk(1, Tier.PUBLIC),),
    )
    assert decide_policy(turn).sensitivity is Tier.RESTRICTED
    assert decide_policy(Turn(principal=_principal(), message="q")).sensitivity is Tier.PUBLIC


def test_decide_policy_stops_turn_when_no_provider_may_take_its_tier(local_max_tier):
    local_max_tier("internal")
    context = (_chunk(2, Tier.INTERNAL), _chunk(3, Tier.CONFIDENTIAL))
    turn = Turn(principal=_principal(Tier.CONFIDENTIAL), message="q", context=context)
    with pytest.raises(ProviderUnavailable, match="confidential"):
        decide_policy(turn)

    allowed = decide_policy(
        Turn(principal=_principal(Tier.CONFIDENTIAL), message="q", context=context[:1])
    )
    assert allowed.sensitivity is Tier.INTERNAL
    assert allowed.provider_candidates == ("local",)


# 9 validate_output --------------------------------------------------------------------------


@pytest.mark.django_db
def test_validate_output_drops_citation_markers_not_shown_to_the_principal():
    shown = (_chunk(1, Tier.PUBLIC), _chunk(2, Tier.INTERNAL))
    turn = Turn(principal=_principal(), message="q", context=shown)
    completion = Completion(
        text="See [1], [2], [3] and [9].",
        cited_markers=(1, 3, 2, 9),
        provider="local",
        model="extractive-v1",
    )
    answer = validate_output(turn, completion)
    assert [c.marker for c in answer.citations] == [1, 2]
    assert {c.chunk_id for c in answer.citations} == {101, 102}
    assert answer.dropped_citations == (3, 9)
    assert answer.provider == "local"


@pytest.mark.django_db
def test_validate_output_without_context_keeps_no_citations():
    turn = Turn(principal=_principal(), message="q")
    completion = Completion(text="x [1]", cited_markers=(1,), provider="local", model="m")
    answer = validate_output(turn, completion)
    assert answer.citations == ()
    assert answer.dropped_citations == (1,)


# prepare_turn on the demo -------------------------------------------------------------------

FINANCE_QUESTIONS = (
    "What is the Q3 2026 revenue forecast?",
    "How are vendor payments approved?",
    "Who signs off on large supplier invoices in finance?",
)


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("question", FINANCE_QUESTIONS)
def test_prepare_turn_for_bob_never_includes_finance_chunks(principal_of, local_max_tier, question):
    finance_docs = set(
        Document.objects.filter(allowed_groups__name="finance").values_list("pk", flat=True)
    )
    assert finance_docs  # the demo has finance documents

    bob = prepare_turn(principal_of("bob"), question)
    assert bob.context, "bob should still get the documents he may read"
    assert not {c.document_id for c in bob.context} & finance_docs
    assert all(c.tier <= Tier.INTERNAL for c in bob.context)
    assert bob.sensitivity <= Tier.INTERNAL
    for title in Document.objects.filter(pk__in=finance_docs).values_list("title", flat=True):
        assert title not in bob.system_prompt

    # The same question does reach the finance documents for a finance user.
    alice = prepare_turn(principal_of("alice"), question)
    assert {c.document_id for c in alice.context} & finance_docs
