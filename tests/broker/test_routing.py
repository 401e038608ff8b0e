"""Routing by data sensitivity and identity propagation, proven on what the loopback
provider server actually received through the real SDKs."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import replace

import pytest

from app.identity import Tier
from audit.models import AuditEvent, EventType
from broker import services as broker
from broker.loopback import Fault
from broker.services import _Restorer
from broker.types import (
    Completion,
    CompletionRequest,
    ContextChunk,
    ProviderUnavailable,
    StreamEvent,
    TokenDelta,
)
from orchestration.pipeline import Answer, answer_stream, prepare_turn
from tests.broker.conftest import provider_entry

CANARY = "CANARY-restricted-7f3a9"

pytestmark = pytest.mark.django_db


def _request(
    sensitivity: Tier = Tier.INTERNAL, *, groups: tuple[str, ...] = (), **changes: object
) -> CompletionRequest:
    request = CompletionRequest(
        system="Answer from these passages:\n[1] "
        + (CANARY if sensitivity >= Tier.CONFIDENTIAL else "memo"),
        user_message="What does the memo say?",
        context=(
            ContextChunk(
                marker=1, chunk_id=1, document_id=1, title="Memo", text="memo", tier=sensitivity
            ),
        ),
        sensitivity=sensitivity,
        user_hash=broker.user_hash(4242),
        request_id="req-routing-1",
        actor_id=4242,
        groups=groups,
    )
    return replace(request, **changes)  # type: ignore[arg-type]


def _final(events: Iterator[StreamEvent]) -> Completion:
    final = list(events)[-1]
    assert isinstance(final, Completion)
    return final


def _models(loopback) -> list[str]:
    return [r.body.get("model") for r in loopback.recorded]


@pytest.mark.parametrize("kind", ["openai", "openai_compatible", "anthropic"])
def test_streaming_through_each_sdk_yields_the_providers_tokens(loopback, use_providers, kind):
    use_providers([provider_entry(loopback, "p", kind)])
    events = list(broker.complete_stream(_request()))
    final = events[-1]
    assert isinstance(final, Completion)
    deltas = [e.text for e in events[:-1] if isinstance(e, TokenDelta)]
    assert len(deltas) > 3
    assert "".join(deltas) == final.text == loopback.state.reply
    assert final.provider == "p"
    assert final.cited_markers == (1,)
    assert final.input_tokens > 0
    assert final.output_tokens > 0
    (seen,) = loopback.recorded
    assert seen.body["stream"] is True
    assert seen.path == ("/v1/messages" if kind == "anthropic" else "/v1/chat/completions")
    assert seen.headers["x-stainless-retry-count"] == "0"  # the SDK's own retries are off


def test_restricted_context_never_reaches_a_lower_tier_provider_even_when_failing_over(
    loopback, use_providers
):
    use_providers(
        [
            provider_entry(loopback, "cheap", "openai", max_tier="internal", priority=1),
            provider_entry(
                loopback, "trusted", "anthropic", max_tier="restricted", zero_retention=True
            ),
        ]
    )
    final = _final(broker.complete_stream(_request(Tier.RESTRICTED)))
    assert isinstance(final, Completion)
    assert final.provider == "trusted"
    # The trusted provider now fails on every call: the broker must stop, not downgrade.
    loopback.set_scenario(Fault("status", status=503))
    with pytest.raises(ProviderUnavailable):
        list(broker.complete_stream(_request(Tier.RESTRICTED)))
    assert "model-cheap" not in _models(loopback)
    assert all(
        CANARY not in r.text for r in loopback.recorded if r.body["model"] != "model-trusted"
    )
    assert CANARY in loopback.recorded[0].text  # the canary did travel, to the right place
    assert AuditEvent.objects.filter(
        event_type=EventType.PROVIDER_UNAVAILABLE, request_id="req-routing-1"
    ).exists()


def test_confidential_data_needs_a_zero_retention_provider(loopback, use_providers, settings):
    use_providers([provider_entry(loopback, "retains", "openai", max_tier="restricted")])
    with pytest.raises(ProviderUnavailable, match="confidential"):
        broker.complete_stream(_request(Tier.CONFIDENTIAL))
    assert loopback.recorded == []
    event = AuditEvent.objects.get(event_type=EventType.PROVIDER_UNAVAILABLE)
    assert event.reason == "no_allowed_provider"
    assert event.actor_id == 4242
    settings.POLICY_ZERO_RETENTION_TIERS = []
    assert _final(broker.complete_stream(_request(Tier.CONFIDENTIAL))).provider == "retains"


def test_a_provider_restricted_to_groups_serves_only_their_members(loopback, use_providers):
    use_providers(
        [
            provider_entry(
                loopback, "finance-only", "openai", priority=1, allowed_groups=["finance"]
            ),
            provider_entry(loopback, "everyone", "anthropic", priority=2),
        ]
    )
    assert [p.name for p in broker.allowed_providers(Tier.INTERNAL, ("engineering",))] == [
        "everyone"
    ]
    bob = _final(broker.complete_stream(_request(groups=("engineering",))))
    alice = _final(broker.complete_stream(_request(groups=("finance",))))
    assert (bob.provider, alice.provider) == ("everyone", "finance-only")
    assert _models(loopback) == ["model-everyone", "model-finance-only"]


def test_identity_hash_is_sent_stable_and_raw_identity_never_leaves(
    loopback, use_providers, principal_of, user_named
):
    """Through the real pipeline: alice's turn reaches both SDKs carrying the keyed hash and
    the request id, never her id, username, name or email."""
    alice = user_named("alice")
    alice.first_name, alice.last_name, alice.email = "Alice", "Liddell", "alice@corp.example"
    alice.save()
    for kind in ("openai", "anthropic"):
        use_providers(
            [provider_entry(loopback, kind, kind, max_tier="restricted", zero_retention=True)]
        )
        for _ in range(2):
            turn = prepare_turn(principal_of("alice"), "What is the travel per diem?")
            answer = list(answer_stream(turn))[-1]
            assert isinstance(answer, Answer)
            assert answer.provider == kind
    expected = broker.user_hash(alice.pk)
    assert len(loopback.recorded) == 4
    for seen in loopback.recorded:
        sent_hash = seen.body.get("user") or seen.body["metadata"]["user_id"]
        assert sent_hash == expected
        assert seen.headers["x-request-id"] == "test-request"
        everything = json.dumps([seen.body, seen.headers]).lower()
        for raw in ("alice", "liddell", "alice@corp.example"):
            assert raw not in everything
        assert not re.search(rf"\b{alice.pk}\b", json.dumps(seen.body.get("metadata", {})))


# --- PII redaction before a provider that asks for it ---------------------------------------

EMAIL = re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+")


def email_redactor(request: CompletionRequest) -> tuple[CompletionRequest, Callable[[str], str]]:
    """A small real redactor: e-mail addresses become <EMAIL_n> and come back on restore."""
    mapping: dict[str, str] = {}

    def swap(match: re.Match[str]) -> str:
        return mapping.setdefault(match.group(0), f"<EMAIL_{len(mapping) + 1}>")

    redacted = replace(
        request,
        system=EMAIL.sub(swap, request.system),
        user_message=EMAIL.sub(swap, request.user_message),
    )
    reverse = {v: k for k, v in mapping.items()}

    def restore(text: str) -> str:
        return re.sub(r"<EMAIL_\d+>", lambda m: reverse.get(m.group(0), m.group(0)), text)

    return redacted, restore


def test_provider_with_redact_pii_gets_placeholders_and_the_user_gets_pii_back(
    loopback, use_providers
):
    use_providers([provider_entry(loopback, "ext", "openai", redact_pii=True)])
    loopback.state.reply = "Write to <EMAIL_1> about it [1]."
    request = _request(user_message="Should I email carol@corp.example?", redactor=email_redactor)
    events = list(broker.complete_stream(request))
    streamed = "".join(e.text for e in events if isinstance(e, TokenDelta))
    assert streamed == events[-1].text == "Write to carol@corp.example about it [1]."
    (seen,) = loopback.recorded
    assert "carol@corp.example" not in seen.text
    assert "<EMAIL_1>" in seen.body["messages"][1]["content"]


def test_provider_with_redact_pii_is_skipped_without_a_redactor(loopback, use_providers):
    use_providers(
        [
            provider_entry(loopback, "ext", "openai", redact_pii=True, priority=1),
            provider_entry(loopback, "inhouse", "openai_compatible", redact_pii=False, priority=2),
        ]
    )
    final = _final(broker.complete_stream(_request(user_message="mail carol@corp.example")))
    assert final.provider == "inhouse"
    assert _models(loopback) == ["model-inhouse"]
    use_providers([provider_entry(loopback, "ext", "openai", redact_pii=True)])
    with pytest.raises(ProviderUnavailable):
        list(broker.complete_stream(_request()))
    assert _models(loopback) == ["model-inhouse"]


def test_restorer_holds_back_a_placeholder_split_across_deltas():
    restorer = _Restorer(lambda t: t.replace("<EMAIL_1>", "carol@corp.example"))
    out = [restorer.feed(piece) for piece in ("Mail <EMA", "IL_", "1> now", " [1", "].")]
    out.append(restorer.flush())
    assert out[:2] == ["Mail ", ""]
    assert "".join(out) == "Mail carol@corp.example now [1]."
