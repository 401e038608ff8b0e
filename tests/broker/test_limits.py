"""Per-user request rate and token budget, shared in Redis: 429 with Retry-After, audited."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from datetime import time as dt_time
from typing import Any

import httpx
import pytest

from app.identity import Tier
from audit.models import AuditEvent, EventType
from broker import limits
from broker import services as broker
from broker.types import BudgetExceeded, Completion, CompletionRequest, RateLimited

pytestmark = pytest.mark.django_db


def _request(user_id: int = 5) -> CompletionRequest:
    return CompletionRequest(
        system="s",
        user_message="What is the travel per diem?",
        context=(),
        sensitivity=Tier.PUBLIC,
        user_hash=broker.user_hash(user_id),
        request_id="req-limits",
        actor_id=user_id,
    )


def _seconds_to_midnight() -> float:
    """The test's own clock: seconds until the next UTC midnight, when budgets reset."""
    now = datetime.now(UTC)
    return (datetime.combine(now.date() + timedelta(days=1), dt_time(), UTC) - now).total_seconds()


def test_requests_per_minute_are_limited_per_user_with_retry_after(broker_redis, settings):
    settings.BROKER_USER_REQUESTS_PER_MINUTE = 2
    for _ in range(2):
        assert isinstance(list(broker.complete_stream(_request()))[-1], Completion)
    with pytest.raises(RateLimited) as limited:
        broker.complete_stream(_request())
    assert 28 <= limited.value.retry_after_s <= 30  # 2 per minute: a slot every 30 s
    list(broker.complete_stream(_request(user_id=6)))  # another user is unaffected
    event = AuditEvent.objects.get(event_type=EventType.RATE_LIMITED)
    assert (event.actor_id, event.reason) == (5, "requests_per_minute")


def test_daily_token_budget_stops_the_user_until_midnight(broker_redis, settings):
    settings.BROKER_USER_DAILY_TOKENS = 10
    final = list(broker.complete_stream(_request()))[-1]
    assert isinstance(final, Completion)
    assert limits.tokens_used_today(broker.user_hash(5)) == final.input_tokens + final.output_tokens
    with pytest.raises(BudgetExceeded) as spent:
        broker.complete_stream(_request())
    assert abs(spent.value.retry_after_s - _seconds_to_midnight()) <= 2
    event = AuditEvent.objects.get(event_type=EventType.BUDGET_EXCEEDED)
    assert event.reason == "tokens_per_day"
    assert "per diem" not in json.dumps(event.metadata)


@pytest.mark.usefixtures("demo")
def test_api_answers_429_with_retry_after_when_over_the_rate(
    client, bearer, broker_redis, settings
):
    settings.BROKER_USER_REQUESTS_PER_MINUTE = 1
    headers = bearer("bob")

    def chat() -> Any:
        return client.post(
            "/api/v1/chat",
            data=json.dumps({"message": "What is the travel per diem?"}),
            content_type="application/json",
            **headers,
        )

    assert chat().status_code == 200
    limited = chat()
    assert limited.status_code == 429
    assert 55 <= int(limited["Retry-After"]) <= 60  # 1 per minute, first request just now
    body = limited.json()
    assert body["error"] == "rate_limited"
    assert body["request_id"]


@pytest.mark.usefixtures("demo")
def test_sse_turn_over_the_budget_is_429_with_retry_after_before_any_event(
    asgi_server, bearer, user_named, broker_redis, settings
):
    settings.BROKER_USER_DAILY_TOKENS = 10
    limits.token_budget_spend(broker.user_hash(user_named("bob").pk), 10)
    auth = {"Authorization": bearer("bob")["HTTP_AUTHORIZATION"]}
    with (
        httpx.Client(timeout=15.0) as client,
        client.stream(
            "POST",
            f"{asgi_server}/api/v1/chat",
            json={"message": "What is the travel per diem?", "conversation": None},
            headers={**auth, "Accept": "text/event-stream"},
        ) as response,
    ):
        body = response.read().decode()
        status, retry_after = response.status_code, response.headers.get("Retry-After")
    # The broker call opens before the stream starts: a real 429, not a 200 with an event.
    assert status == 429
    assert retry_after is not None
    assert abs(int(retry_after) - _seconds_to_midnight()) <= 2
    error = json.loads(body)
    assert error["error"] == "budget_exceeded"
    assert error["request_id"]
    assert AuditEvent.objects.filter(event_type=EventType.BUDGET_EXCEEDED).exists()
