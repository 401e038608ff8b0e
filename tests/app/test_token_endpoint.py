"""`POST /api/v1/auth/token` and revocation: a session (with CSRF) mints a short-lived token
whose scopes are a subset of its own; a token cannot mint tokens; every issue and (once
per minute) every use is audited; a revoked token stops working at once."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from app.identity import ALL_SCOPES
from app.models import ApiToken
from app.redis import redis_client
from app.selectors import principal_for
from app.services import TokenError, token_issue_for_session, token_use_record
from audit.models import AuditEvent, EventType

URL = "/api/v1/auth/token"


def _issue(client: Client, body: dict, **extra):
    return client.post(URL, data=json.dumps(body), content_type="application/json", **extra)


def _bearer(raw: str) -> Any:
    return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}


def _csrf_client(user) -> Client:
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    client.get("/")  # the chat page sets the CSRF cookie
    return client


@pytest.mark.usefixtures("demo")
def test_session_issues_a_short_lived_scoped_token_that_works(client, user_named):
    bob = user_named("bob")
    client.force_login(bob)
    response = _issue(client, {"scopes": ["search"], "ttl": 120})
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["scopes"] == ["search"]
    token = ApiToken.objects.get(pk=body["id"])
    assert token.user == bob
    assert token.token_hash != body["token"]

    event = AuditEvent.objects.get(event_type=EventType.TOKEN_ISSUED, token_id=str(token.pk))
    assert event.actor_id == bob.pk
    assert event.request_id == response["X-Request-ID"]

    fresh = Client()
    auth = _bearer(body["token"])
    assert fresh.get("/api/v1/search", {"q": "per diem"}, **auth).status_code == 200
    assert fresh.get("/api/v1/documents", **auth).status_code == 403  # not in its scopes


@pytest.mark.usefixtures("demo")
def test_session_token_endpoint_requires_csrf(user_named):
    client = _csrf_client(user_named("bob"))
    assert _issue(client, {"scopes": ["chat"]}).status_code == 403
    assert not ApiToken.objects.exists()
    csrf = client.cookies["csrftoken"].value
    assert _issue(client, {"scopes": ["chat"]}, HTTP_X_CSRFTOKEN=csrf).status_code == 201


@pytest.mark.usefixtures("demo")
def test_token_endpoint_refuses_anonymous_callers(client):
    response = _issue(client, {})
    assert response.status_code == 401
    assert not ApiToken.objects.exists()


@pytest.mark.usefixtures("demo")
def test_a_token_cannot_issue_another_token(client, bearer):
    response = _issue(client, {"scopes": ["chat"]}, **bearer("bob"))
    assert response.status_code == 403
    assert ApiToken.objects.count() == 1  # only the fixture's own token


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    "body",
    [{"ttl": 901}, {"ttl": 0}, {"scopes": ["admin"]}, {"scopes": []}, {"scopes": "chat"}],
)
def test_session_token_ttl_is_capped_at_fifteen_minutes_and_scopes_are_closed(
    client, user_named, body
):
    client.force_login(user_named("bob"))
    response = _issue(client, body)
    assert response.status_code == 400, response.content
    assert response.json()["error"] == "invalid_request"
    assert not ApiToken.objects.exists()
    assert not AuditEvent.objects.filter(event_type=EventType.TOKEN_ISSUED).exists()


@pytest.mark.usefixtures("demo")
def test_session_token_default_lifetime_is_at_most_fifteen_minutes(client, user_named):
    client.force_login(user_named("bob"))
    body = _issue(client, {}).json()
    token = ApiToken.objects.get(pk=body["id"])
    assert (token.expires_at - token.created_at).total_seconds() <= 900
    assert sorted(body["scopes"]) == sorted(ALL_SCOPES)


@pytest.mark.usefixtures("demo")
def test_session_cannot_grant_scopes_beyond_its_own(user_named):
    bob = user_named("bob")
    narrow = principal_for(bob, request_id="req-narrow", scopes=frozenset({"search"}))
    with pytest.raises(TokenError, match="beyond your own: chat"):
        token_issue_for_session(
            principal=narrow, user=bob, scopes=frozenset({"search", "chat"}), ttl_s=60
        )
    with pytest.raises(TokenError, match="own user"):
        token_issue_for_session(
            principal=narrow, user=user_named("alice"), scopes=frozenset({"search"}), ttl_s=60
        )
    assert not ApiToken.objects.exists()


@pytest.mark.usefixtures("demo")
def test_token_use_is_audited_once_per_token_per_minute(client, user_named):
    client.force_login(user_named("bob"))
    body = _issue(client, {"scopes": ["search"]}).json()
    redis_client().delete(f"token-used:{body['id']}")
    auth = _bearer(body["token"])
    fresh = Client()
    first = fresh.get("/api/v1/search", {"q": "per diem"}, **auth)
    fresh.get("/api/v1/search", {"q": "expenses"}, **auth)
    fresh.get("/api/v1/search", {"q": "hotel"}, **auth)
    used = AuditEvent.objects.filter(event_type=EventType.TOKEN_USED, token_id=body["id"])
    assert used.count() == 1
    event = used.get()
    assert event.request_id == first["X-Request-ID"]
    assert event.actor_id == user_named("bob").pk
    assert event.metadata["path"] == "/api/v1/search"
    assert "per diem" not in json.dumps(event.metadata)

    # A new window (the Redis marker expired) audits the next use again.
    redis_client().delete(f"token-used:{body['id']}")
    fresh.get("/api/v1/search", {"q": "travel"}, **auth)
    assert used.count() == 2


@pytest.mark.usefixtures("demo")
def test_token_use_is_audited_even_when_redis_is_unreachable(user_named, settings):
    from app import redis as app_redis
    from app.services import token_issue

    _, token = token_issue(user=user_named("bob"), scopes=ALL_SCOPES, ttl_s=60)
    app_redis.redis_client.cache_clear()
    settings.REDIS_URL = "unix:///nonexistent/redis.sock"
    try:
        assert token_use_record(token=token, request_id="r1", path="/api/v1/search")
        assert token_use_record(token=token, request_id="r2", path="/api/v1/search")
    finally:
        app_redis.redis_client.cache_clear()
    assert AuditEvent.objects.filter(event_type=EventType.TOKEN_USED).count() == 2


@pytest.mark.usefixtures("demo")
def test_revoked_token_stops_working_and_revocation_is_audited(client, user_named):
    client.force_login(user_named("bob"))
    body = _issue(client, {"scopes": ["search"]}).json()
    auth = _bearer(body["token"])
    assert Client().get("/api/v1/search", {"q": "x"}, **auth).status_code == 200

    assert client.delete(f"{URL}/{body['id']}").status_code == 204
    assert Client().get("/api/v1/search", {"q": "x"}, **auth).status_code == 401
    assert AuditEvent.objects.filter(
        event_type=EventType.TOKEN_REVOKED, token_id=body["id"]
    ).exists()


@pytest.mark.usefixtures("demo")
def test_nobody_can_revoke_another_users_token(client, user_named, bearer):
    client.force_login(user_named("bob"))
    body = _issue(client, {"scopes": ["search"]}).json()
    alice = Client()
    alice.force_login(user_named("alice"))
    assert alice.delete(f"{URL}/{body['id']}").status_code == 404
    assert Client().delete(f"{URL}/{body['id']}", **bearer("alice")).status_code == 404
    assert ApiToken.objects.get(pk=body["id"]).revoked_at is None


@pytest.mark.usefixtures("demo")
def test_a_token_may_revoke_itself(client, user_named):
    client.force_login(user_named("bob"))
    body = _issue(client, {"scopes": ["search"]}).json()
    auth = _bearer(body["token"])
    assert Client().delete(f"{URL}/{body['id']}", **auth).status_code == 204
    assert Client().get("/api/v1/search", {"q": "x"}, **auth).status_code == 401
