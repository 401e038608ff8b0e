"""Velocity signals (request bursts, distinct documents touched, failed sign-ins) feed the
anomaly score: a burst raises the user to throttled, normal use leaves the score alone."""

from __future__ import annotations

import json
import time

import pytest

from app.models import User
from app.redis import redis_client
from audit.models import AuditEvent, EventType
from orchestration import anomaly
from orchestration.models import AnomalyState

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"


@pytest.fixture
def tight(settings):
    settings.ANOMALY_THROTTLE_AT = 6
    settings.ANOMALY_LOCK_AT = 12
    settings.VELOCITY_REQUESTS_WINDOW_S = 3600
    settings.VELOCITY_REQUESTS_PER_WINDOW = 20
    settings.VELOCITY_DOCUMENTS_WINDOW_S = 3600
    settings.VELOCITY_DOCUMENTS_PER_WINDOW = 20
    settings.VELOCITY_FAILED_LOGINS_WINDOW_S = 3600
    settings.VELOCITY_FAILED_LOGINS_PER_WINDOW = 2
    settings.ACCOUNT_RATE_LIMITS = False  # allauth's own lockout is tested in test_mfa.py
    # Counts live in fixed buckets: keep a burst from straddling a bucket boundary.
    if 3600 - time.time() % 3600 < 30:
        time.sleep(3600 - time.time() % 3600 + 0.1)
    return settings


def _state(user_id: int) -> str:
    return anomaly.state_of(user_id)


def _transition_reasons(user_id: int) -> list[str]:
    return list(
        AuditEvent.objects.filter(event_type=EventType.ANOMALY_CHANGED, subject=f"user:{user_id}")
        .order_by("id")
        .values_list("reason", flat=True)
    )


def test_a_request_burst_through_the_app_throttles_the_user(tight, client, user_named):
    bob = user_named("bob")
    client.force_login(bob)
    for _ in range(39):
        assert client.get("/api/v1/conversations").status_code == 200
    assert _state(bob.pk) == "normal"  # one crossing: score 3
    assert client.get("/api/v1/conversations").status_code == 200  # the 40th
    assert _state(bob.pk) == "throttled"
    assert _transition_reasons(bob.pk)[-1] == "signal:velocity_requests"
    assert AnomalyState.objects.get(user_id=bob.pk).score >= 6


def test_normal_request_pace_adds_nothing(tight, client, user_named):
    bob = user_named("bob")
    client.force_login(bob)
    for _ in range(19):
        client.get("/api/v1/conversations")
    assert anomaly.rolling_score(bob.pk) == 0
    assert _state(bob.pk) == "normal"


def test_distinct_documents_burst_throttles_and_rereading_does_not(tight, user_named):
    bob = user_named("bob")
    now = time.time()
    for _ in range(10):  # the same 15 documents again and again: normal work
        anomaly.documents_velocity_record(user_id=bob.pk, document_ids=list(range(15)), now=now)
    assert anomaly.rolling_score(bob.pk, now=now) == 0
    states = [
        anomaly.documents_velocity_record(user_id=bob.pk, document_ids=[d], now=now)
        for d in range(15, 40)
    ]
    assert [s for s in states if s] == ["normal", "throttled"]  # at 20 and at 40 documents
    assert _state(bob.pk) == "throttled"


def test_search_results_count_as_documents_touched(tight, client, bearer, user_named):
    bob = user_named("bob")
    response = client.get("/api/v1/search?q=policy&k=10", **bearer("bob"))
    assert response.status_code == 200
    documents = {r["document"] for r in response.json()["results"]}
    assert documents
    (key,) = list(redis_client().scan_iter(match=f"anomaly:velocity:documents:{bob.pk}:*"))
    assert {int(m) for m in redis_client().smembers(key)} == documents


def test_failed_sign_ins_against_an_account_raise_its_score(tight, client):
    erin = User.objects.create_user("erin", "erin@example.com", "erin-pass-phrase-2026")
    for _ in range(3):
        client.post(LOGIN, {"login": "erin", "password": "wrong-pass-phrase-2026"})
    assert anomaly.rolling_score(erin.pk) == 3  # one crossing
    assert _state(erin.pk) == "normal"
    client.post(LOGIN, {"login": "erin@example.com", "password": "wrong-pass-phrase-2026"})
    assert _state(erin.pk) == "throttled"
    assert _transition_reasons(erin.pk)[-1] == "signal:failed_logins"


def test_unknown_login_names_and_successful_sign_ins_add_nothing(tight, client):
    frank = User.objects.create_user("frank", "frank@example.com", "frank-pass-phrase-2026")
    for _ in range(4):
        client.post(LOGIN, {"login": "nobody-here", "password": "wrong-pass-phrase-2026"})
    response = client.post(LOGIN, {"login": "frank", "password": "frank-pass-phrase-2026"})
    assert response.status_code == 302
    assert anomaly.rolling_score(frank.pk) == 0
    assert not any(redis_client().scan_iter(match="anomaly:velocity:failed-logins:*"))
    assert json.dumps(_transition_reasons(frank.pk)) == "[]"


def test_velocity_is_detection_only_an_unreachable_redis_stops_no_audited_read(tight, principal_of):
    from app import redis as app_redis
    from app.services import data_access_record

    bob = principal_of("bob")
    app_redis.redis_client.cache_clear()
    tight.REDIS_URL = "unix:///nonexistent/redis.sock"
    try:
        data_access_record(
            principal=bob, event_type=EventType.DOCUMENT_VIEWED, shown=[(1, 1, None)]
        )
    finally:
        app_redis.redis_client.cache_clear()
    event = AuditEvent.objects.filter(event_type=EventType.DOCUMENT_VIEWED).latest("id")
    assert event.actor_id == bob.user_id
