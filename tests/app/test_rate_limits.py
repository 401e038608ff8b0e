"""In-app rate limits (Redis): per IP, per user and per route, 429 with Retry-After and the
JSON error shape, the first refusal per window audited; forwarded headers are believed only
from a configured proxy."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client, RequestFactory

from app.net import client_ip
from app.ratelimit import rate_check
from app.redis import redis_client
from audit.models import AuditEvent, EventType

BIG = (10**6, 60)


@pytest.fixture
def limits(settings):
    """Start from empty counters; every limit huge unless a test tightens it."""
    for key in redis_client().scan_iter("rl:*"):
        redis_client().delete(key)
    settings.RATE_LIMITS = dict.fromkeys(settings.RATE_LIMITS, BIG)
    return settings.RATE_LIMITS


def _chat(client: Client, headers: dict, message: str = "What is the per diem?"):
    return client.post(
        "/api/v1/chat",
        data=json.dumps({"message": message}),
        content_type="application/json",
        **headers,
    )


@pytest.mark.usefixtures("demo")
def test_chat_route_limit_per_user_answers_429_with_retry_after_and_audits_once(
    limits, bearer, user_named
):
    limits["route:chat"] = (2, 60)
    auth = bearer("bob", frozenset({"chat", "search"}))
    client = Client()
    assert _chat(client, auth).status_code == 200
    assert _chat(client, auth).status_code == 200
    refused = _chat(client, auth)
    assert refused.status_code == 429
    # 2 per 60 s: a slot every 30 s, counted from the first request moments ago.
    assert 25 <= int(refused["Retry-After"]) <= 30
    body = refused.json()
    assert body["error"] == "rate_limited"
    assert body["request_id"] == refused["X-Request-ID"]
    assert _chat(client, auth).status_code == 429

    events = AuditEvent.objects.filter(event_type=EventType.RATE_LIMITED)
    assert events.count() == 1  # one per offender and window, not one per refusal
    event = events.get()
    assert (event.actor_id, event.reason) == (user_named("bob").pk, "route:chat")
    assert event.metadata["per"] == "user"

    # The limit is per user and per route: other routes and other users go on.
    assert client.get("/api/v1/search", {"q": "per diem"}, **auth).status_code == 200
    assert _chat(client, bearer("alice", frozenset({"chat"}))).status_code == 200


@pytest.mark.usefixtures("demo")
def test_user_limit_follows_the_user_across_credentials(limits, bearer):
    limits["user"] = (3, 60)
    for _ in range(3):
        assert Client().get("/api/v1/documents", **bearer("bob")).status_code == 200
    assert Client().get("/api/v1/documents", **bearer("bob")).status_code == 429  # new token
    assert Client().get("/api/v1/documents", **bearer("alice")).status_code == 200


@pytest.mark.usefixtures("demo")
def test_ip_limit_applies_before_authentication(limits, client):
    limits["ip"] = (3, 60)
    for _ in range(3):
        assert client.get("/healthz").status_code == 200
    refused = client.get("/accounts/login/")
    assert refused.status_code == 429
    assert refused["Retry-After"]
    other = Client(REMOTE_ADDR="198.51.100.7")
    assert other.get("/healthz").status_code == 200


@pytest.mark.usefixtures("demo")
def test_login_posts_are_limited_per_ip(limits, client):
    limits["route:login:ip"] = (2, 60)
    for _ in range(2):
        client.post("/accounts/login/", {"login": "nobody-x", "password": "wrong-pass-2026"})
    refused = client.post("/accounts/login/", {"login": "bob", "password": "bob-demo-pass-2026"})
    assert refused.status_code == 429
    assert client.get("/").status_code == 302  # not signed in
    assert client.get("/accounts/login/").status_code == 200  # reading the form is fine


def test_limits_have_no_window_boundary_and_retry_after_is_exact(limits):
    """GCRA: 2 per 60 s is a burst of 2, then one every 30 s. A fixed window would let
    2 more through the moment its minute rolled over (t=1259.9 → 1260.0)."""
    limits["route:chat"] = (2, 60)
    assert rate_check(limit="route:chat", who="t-1", now=1259.8).allowed
    assert rate_check(limit="route:chat", who="t-1", now=1259.9).allowed
    refused = rate_check(limit="route:chat", who="t-1", now=1260.0)
    assert not refused.allowed
    assert refused.retry_after_s == 30  # one slot frees at 1289.8
    assert refused.first_refusal
    again = rate_check(limit="route:chat", who="t-1", now=1275.0)
    assert not again.allowed
    assert not again.first_refusal  # audited once per offender and period
    assert again.retry_after_s == 15
    assert rate_check(limit="route:chat", who="t-1", now=1290.0).allowed  # one slot back
    assert not rate_check(limit="route:chat", who="t-1", now=1290.1).allowed
    assert rate_check(limit="route:chat", who="t-2", now=1290.1).allowed  # per offender


# --- forwarded headers ------------------------------------------------------------------


def _request(remote: str, **headers: Any) -> Any:
    return RequestFactory().get("/", REMOTE_ADDR=remote, **headers)


def test_forwarded_for_is_ignored_without_a_trusted_proxy(settings):
    settings.TRUSTED_PROXIES = []
    request = _request("203.0.113.9", HTTP_X_FORWARDED_FOR="10.9.9.9")
    assert client_ip(request) == "203.0.113.9"


def test_forwarded_for_is_believed_only_from_the_configured_proxy(settings):
    settings.TRUSTED_PROXIES = ["10.0.0.0/24"]
    via_proxy = _request("10.0.0.5", HTTP_X_FORWARDED_FOR="1.2.3.4, 203.0.113.9")
    assert client_ip(via_proxy) == "203.0.113.9"  # the right-most hop the proxy saw
    spoofed = _request("198.51.100.1", HTTP_X_FORWARDED_FOR="10.0.0.5, 1.2.3.4")
    assert client_ip(spoofed) == "198.51.100.1"
    chained = _request("10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9, 10.0.0.7")
    assert client_ip(chained) == "203.0.113.9"
    garbage = _request("10.0.0.5", HTTP_X_FORWARDED_FOR="not-an-ip")
    assert client_ip(garbage) == "10.0.0.5"


@pytest.mark.usefixtures("demo")
def test_untrusted_clients_cannot_spoof_their_ip_past_the_rate_limit(limits, settings):
    settings.TRUSTED_PROXIES = ["10.0.0.1"]
    limits["ip"] = (2, 60)
    attacker = Client(REMOTE_ADDR="198.51.100.20")
    for n in range(2):
        attacker.get("/healthz", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}")
    assert attacker.get("/healthz", HTTP_X_FORWARDED_FOR="192.0.2.99").status_code == 429

    proxy = Client(REMOTE_ADDR="10.0.0.1")
    for n in range(2):
        assert proxy.get("/healthz", HTTP_X_FORWARDED_FOR=f"192.0.2.{n}").status_code == 200
    assert proxy.get("/healthz", HTTP_X_FORWARDED_FOR="192.0.2.0").status_code == 200


@pytest.mark.usefixtures("demo")
def test_untrusted_clients_cannot_claim_https_through_forwarded_proto(settings, client):
    settings.TRUSTED_PROXIES = ["10.0.0.1"]
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.SECURE_SSL_REDIRECT = True
    spoofed = Client(REMOTE_ADDR="198.51.100.20").get("/healthz", HTTP_X_FORWARDED_PROTO="https")
    assert spoofed.status_code == 301  # still plain HTTP: redirected
    proxied = Client(REMOTE_ADDR="10.0.0.1").get("/healthz", HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200
