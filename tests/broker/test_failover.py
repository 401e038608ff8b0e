"""Failover on each fault kind, retries honouring Retry-After, the circuit breaker, and
streams that fail after their first token — against the loopback server via the SDKs."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from app.identity import Tier
from audit.models import AuditEvent, EventType
from broker import limits
from broker import services as broker
from broker.loopback import Fault, refused_url
from broker.types import Completion, CompletionRequest, ProviderUnavailable, StreamEvent, TokenDelta
from tests.broker.conftest import provider_entry

pytestmark = pytest.mark.django_db


def _request() -> CompletionRequest:
    return CompletionRequest(
        system="Answer from the passages.",
        user_message="What is the answer?",
        context=(),
        sensitivity=Tier.INTERNAL,
        user_hash=broker.user_hash(77),
        request_id="req-failover",
        actor_id=77,
    )


def _final(events: Iterator[StreamEvent]) -> Completion:
    final = list(events)[-1]
    assert isinstance(final, Completion)
    return final


def _models(loopback) -> list[str]:
    return [r.body.get("model") for r in loopback.recorded]


@pytest.fixture
def two_providers(loopback, use_providers, settings):
    """`primary` (OpenAI SDK) then `secondary` (Anthropic SDK); one attempt per provider."""
    settings.BROKER_MAX_ATTEMPTS = 1

    def use(**primary: object) -> None:
        use_providers(
            [
                provider_entry(loopback, "primary", "openai", priority=1, **primary),
                provider_entry(loopback, "secondary", "anthropic", priority=2),
            ]
        )

    use()
    return use


@pytest.mark.parametrize(
    ("fault", "kind"),
    [
        (Fault("status", status=500), "server_error"),
        (Fault("status", status=503), "server_error"),
        (Fault("status", status=429, retry_after=1), "rate_limited"),
        (Fault("status", status=400), "client_error"),
        # A non-JSON body on a streaming call parses as an SSE stream with no events.
        (Fault("malformed"), "empty_response"),
        (Fault("malformed_stream"), "malformed"),
        (Fault("disconnect", after_tokens=0), "disconnect"),
        (Fault("read_timeout", seconds=2.5), "timeout"),
    ],
    ids=lambda v: v.kind if isinstance(v, Fault) else v,
)
def test_primary_fault_before_first_token_fails_over_and_is_audited(
    loopback, two_providers, fault, kind
):
    two_providers(timeout_s=1)
    loopback.inject(fault)
    final = _final(broker.complete_stream(_request()))
    assert final.provider == "secondary"
    assert final.text == loopback.state.reply
    assert "partial" not in final.labels
    assert _models(loopback) == ["model-primary", "model-secondary"]
    event = AuditEvent.objects.get(event_type=EventType.PROVIDER_FAILOVER)
    assert event.reason == kind
    assert event.metadata["to"] == "secondary"
    assert event.metadata["passed"][0]["provider"] == "primary"
    assert event.request_id == "req-failover"
    assert "What is the answer" not in str(event.metadata)  # never prompt text


def test_connection_refused_fails_over(loopback, two_providers):
    two_providers(base_url=refused_url() + "/v1")
    assert _final(broker.complete_stream(_request())).provider == "secondary"
    assert AuditEvent.objects.get(event_type=EventType.PROVIDER_FAILOVER).reason == "connect"


def test_one_retry_loop_honours_retry_after_on_the_same_provider(loopback, two_providers, settings):
    settings.BROKER_MAX_ATTEMPTS = 2
    loopback.inject(Fault("status", status=429, retry_after=0.3))
    assert _final(broker.complete_stream(_request())).provider == "primary"
    first, second = loopback.recorded
    assert second.at - first.at >= 0.3
    assert [r.headers["x-stainless-retry-count"] for r in (first, second)] == ["0", "0"]


def test_a_retry_after_beyond_the_cap_fails_over_without_waiting(loopback, two_providers, settings):
    settings.BROKER_MAX_ATTEMPTS = 3
    settings.BROKER_MAX_RETRY_WAIT_S = 1
    loopback.inject(Fault("status", status=429, retry_after=120))
    assert _final(broker.complete_stream(_request())).provider == "secondary"
    assert _models(loopback) == ["model-primary", "model-secondary"]


def test_a_client_error_is_not_retried(loopback, two_providers, settings):
    settings.BROKER_MAX_ATTEMPTS = 3
    loopback.inject(Fault("status", status=401))
    assert _final(broker.complete_stream(_request())).provider == "secondary"
    assert _models(loopback) == ["model-primary", "model-secondary"]


def test_failure_after_the_first_token_ends_the_stream_marked_partial(loopback, two_providers):
    loopback.inject(Fault("disconnect", after_tokens=3))
    events = list(broker.complete_stream(_request()))
    final = events[-1]
    assert isinstance(final, Completion)
    assert final.labels == ("partial",)
    assert final.provider == "primary"
    assert final.text.endswith(broker.INTERRUPTED_MARKER)
    streamed = "".join(e.text for e in events if isinstance(e, TokenDelta))
    assert streamed == final.text
    assert streamed.startswith("Per the documents, ")
    assert _models(loopback) == ["model-primary"]  # no second answer spliced on
    event = AuditEvent.objects.get(event_type=EventType.PROVIDER_CALL)
    assert (event.decision, event.reason) == ("partial", "disconnect")


def test_when_every_allowed_provider_fails_the_turn_stops_and_is_audited(loopback, two_providers):
    loopback.set_scenario(Fault("status", status=503))
    with pytest.raises(ProviderUnavailable):
        list(broker.complete_stream(_request()))
    event = AuditEvent.objects.get(event_type=EventType.PROVIDER_UNAVAILABLE)
    assert event.reason == "all_allowed_providers_failed"
    assert [p["provider"] for p in event.metadata["passed"]] == ["primary", "secondary"]


def test_breaker_opens_after_consecutive_failures_probes_after_cooldown_and_closes(
    loopback, two_providers, settings
):
    settings.BROKER_BREAKER_FAILURES = 2
    settings.BROKER_BREAKER_COOLDOWN_S = 0.3
    for _ in range(2):
        loopback.inject(Fault("status", status=500))
        assert _final(broker.complete_stream(_request())).provider == "secondary"
    assert limits.breaker_state("primary") == limits.OPEN
    assert broker.usable_provider_count() == 1
    loopback.reset()
    # Open: the primary is not even called.
    assert _final(broker.complete_stream(_request())).provider == "secondary"
    assert _models(loopback) == ["model-secondary"]
    # The opening was audited; the skips it causes are not audited turn by turn.
    assert AuditEvent.objects.filter(event_type=EventType.PROVIDER_FAILOVER).count() == 2
    # After the cool-down one probe goes through; its success closes the breaker.
    time.sleep(0.35)
    assert _final(broker.complete_stream(_request())).provider == "primary"
    assert limits.breaker_state("primary") == limits.CLOSED
    transitions = [
        e.reason
        for e in AuditEvent.objects.filter(event_type=EventType.BREAKER_CHANGED).order_by("id")
    ]
    assert transitions == ["closed->open", "open->half_open", "half_open->closed"]


def test_a_failed_half_open_probe_reopens_the_breaker(loopback, two_providers, settings):
    settings.BROKER_BREAKER_FAILURES = 1
    settings.BROKER_BREAKER_COOLDOWN_S = 0.2
    loopback.inject(Fault("status", status=500))
    _final(broker.complete_stream(_request()))
    time.sleep(0.25)
    loopback.inject(Fault("status", status=503))
    assert _final(broker.complete_stream(_request())).provider == "secondary"
    assert limits.breaker_state("primary") == limits.OPEN
    transitions = [
        e.reason
        for e in AuditEvent.objects.filter(event_type=EventType.BREAKER_CHANGED).order_by("id")
    ]
    assert transitions == ["closed->open", "open->half_open", "half_open->open"]


def test_only_one_caller_wins_the_half_open_probe(broker_redis, settings):
    settings.BROKER_BREAKER_FAILURES = 1
    settings.BROKER_BREAKER_COOLDOWN_S = 0.1
    limits.breaker_failure("p")
    assert limits.breaker_admit("p") == limits.Admission(False)
    time.sleep(0.15)
    admitted = [limits.breaker_admit("p").admitted for _ in range(5)]
    assert admitted == [True, False, False, False, False]


def test_breaker_opens_on_the_failure_ratio_without_consecutive_failures(
    loopback, two_providers, settings
):
    settings.BROKER_BREAKER_FAILURES = 100  # consecutive failures never reach this
    settings.BROKER_BREAKER_FAILURE_RATIO = 0.5
    settings.BROKER_BREAKER_MIN_CALLS = 4
    settings.BROKER_BREAKER_WINDOW_S = 3600
    states = []
    for turn in range(5):
        if turn % 2 == 0:
            loopback.inject(Fault("status", status=500))
        _final(broker.complete_stream(_request()))
        states.append(limits.breaker_state("primary"))
    # fail, ok, fail (2/3 but only 3 calls), ok (2/4 → still closed until a failure), fail
    assert states == ["closed", "closed", "closed", "closed", "open"]
    event = AuditEvent.objects.get(event_type=EventType.BREAKER_CHANGED)
    assert event.reason == "closed->open"
