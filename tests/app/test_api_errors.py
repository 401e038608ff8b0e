"""Bad input gets the right status and JSON error, and nothing is written."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from app.models import ApiToken, Conversation, Message
from audit.models import AuditEvent


def _counts() -> tuple[int, int, int]:
    chat_events = AuditEvent.objects.filter(event_type__startswith="chat.").count()
    return Conversation.objects.count(), Message.objects.count(), chat_events


def _post(client, headers, body) -> Any:
    return client.post(
        "/api/v1/chat",
        data=json.dumps(body) if not isinstance(body, str) else body,
        content_type="application/json",
        **headers,
    )


def _assert_error(response, status: int, code: str) -> None:
    assert response.status_code == status, response.content
    body = response.json()
    assert body["error"] == code
    assert body["detail"]
    assert body["request_id"] == response["X-Request-ID"]


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    ("body", "code"),
    [
        ({"message": ""}, "empty_message"),
        ({"message": "   \n  "}, "empty_message"),
        ({"message": "x" * 4001}, "message_too_long"),
        ({"message": 42}, "invalid_request"),
        ({"message": ["a list"]}, "invalid_request"),
        ({}, "invalid_request"),
        ({"message": "hi\x00there"}, "invalid_characters"),
        ("{not json", "malformed_request"),
        ({"message": "hello", "conversation": "abc"}, "invalid_request"),
    ],
)
def test_bad_chat_input_is_400_and_writes_nothing(client, bearer, body, code):
    before = _counts()
    _assert_error(_post(client, bearer("bob"), body), 400, code)
    assert _counts() == before


@pytest.mark.usefixtures("demo")
def test_message_at_the_limit_is_accepted(client, bearer, settings):
    settings.CHAT_MAX_MESSAGE_CHARS = 50
    assert _post(client, bearer("bob"), {"message": "y" * 50}).status_code == 200
    _assert_error(_post(client, bearer("bob"), {"message": "y" * 51}), 400, "message_too_long")


@pytest.mark.usefixtures("demo")
def test_unknown_conversation_is_404(client, bearer):
    before = _counts()
    _assert_error(
        _post(client, bearer("bob"), {"message": "hello", "conversation": 999999}), 404, "not_found"
    )
    assert _counts() == before


@pytest.mark.usefixtures("demo")
def test_foreign_conversation_is_404_never_403(client, bearer):
    alice_reply = _post(client, bearer("alice"), {"message": "What is the travel per diem?"})
    conversation_id = alice_reply.json()["conversation"]
    before = _counts()
    _assert_error(
        _post(client, bearer("bob"), {"message": "hi", "conversation": conversation_id}),
        404,
        "not_found",
    )
    _assert_error(
        client.get(f"/api/v1/conversations/{conversation_id}", **bearer("bob")), 404, "not_found"
    )
    assert _counts() == before


@pytest.mark.usefixtures("demo")
def test_expired_token_is_401(client, bearer):
    headers = bearer("bob")
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    before = _counts()
    response = _post(client, headers, {"message": "hello"})
    _assert_error(response, 401, "unauthenticated")
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert _counts() == before


@pytest.mark.usefixtures("demo")
def test_revoked_token_is_401(client, bearer):
    from app.services import token_revoke

    headers = bearer("bob")
    token_revoke(token=ApiToken.objects.get(), actor_id=None)
    _assert_error(_post(client, headers, {"message": "hello"}), 401, "unauthenticated")


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    "value", ["Bearer", "Bearer sgr_not-a-real-token", "Basic Ym9iOnB3", "sgr_x"]
)
def test_malformed_or_unknown_credentials_are_401(client, value):
    _assert_error(
        _post(client, {"HTTP_AUTHORIZATION": value}, {"message": "hello"}), 401, "unauthenticated"
    )


@pytest.mark.usefixtures("demo")
def test_no_credentials_is_401(client):
    _assert_error(_post(client, {}, {"message": "hello"}), 401, "unauthenticated")


@pytest.mark.usefixtures("demo")
def test_missing_scope_is_403_and_writes_nothing(client, bearer):
    before = _counts()
    search_only = bearer("bob", frozenset({"search"}))
    _assert_error(_post(client, search_only, {"message": "hello"}), 403, "forbidden")
    _assert_error(client.get("/api/v1/conversations", **search_only), 403, "forbidden")
    chat_only = bearer("bob", frozenset({"chat"}))
    _assert_error(client.get("/api/v1/search", {"q": "x"}, **chat_only), 403, "forbidden")
    _assert_error(client.get("/api/v1/documents", **chat_only), 403, "forbidden")
    assert _counts() == before


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    "params", [{}, {"q": "x", "k": 0}, {"q": "x", "k": 51}, {"q": "x", "k": "many"}]
)
def test_bad_search_parameters_are_400(client, bearer, params):
    _assert_error(client.get("/api/v1/search", params, **bearer("bob")), 400, "invalid_request")


def test_unknown_api_path_is_json_404(client, db):
    response = client.get("/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"] == "not_found"


@pytest.mark.usefixtures("demo")
def test_session_api_calls_need_csrf(user_named):
    from django.test import Client

    client = Client(enforce_csrf_checks=True)
    client.force_login(user_named("bob"))
    response = client.post(
        "/api/v1/chat", data=json.dumps({"message": "hello"}), content_type="application/json"
    )
    _assert_error(response, 403, "forbidden")
