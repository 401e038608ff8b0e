"""The whole chat turn through the HTTP API, on the seeded demo and real services."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from app.models import Conversation
from audit.models import AuditEvent, EventType
from retrieval.models import Document
from retrieval.services import document_acl_update

FORECAST_QUESTION = "What is the Q3 2026 revenue forecast?"
FORECAST_TITLE = "Q3 2026 Revenue Forecast"
FORECAST_FACTS = ("48.2", "Halvorsen")


def _chat(client: Client, headers: dict[str, Any], message: str, **extra: object) -> Any:
    response = client.post(
        "/api/v1/chat",
        data=json.dumps({"message": message, **extra}),
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 200, response.content
    return response.json()


def _forecast() -> Document:
    return Document.objects.get(title=FORECAST_TITLE)


@pytest.mark.usefixtures("demo")
def test_bob_gets_nothing_of_the_finance_forecast_alice_gets_it_cited(client, bearer):
    bob = _chat(client, bearer("bob"), FORECAST_QUESTION)
    forecast = _forecast()
    assert forecast.pk not in {c["document"] for c in bob["citations"]}
    assert FORECAST_TITLE not in json.dumps(bob)
    for fact in FORECAST_FACTS:
        assert fact not in bob["answer"]

    alice = _chat(client, bearer("alice"), FORECAST_QUESTION)
    assert forecast.pk in {c["document"] for c in alice["citations"]}
    assert any(fact in alice["answer"] for fact in FORECAST_FACTS)
    assert alice["provider"] == "local"
    assert alice["blocked"] is False
    assert alice["request_id"]


@pytest.mark.usefixtures("demo")
def test_acl_change_takes_effect_on_the_very_next_query(client, bearer, user_named):
    headers = bearer("alice")
    before = _chat(client, headers, FORECAST_QUESTION)
    forecast = _forecast()
    assert forecast.pk in {c["document"] for c in before["citations"]}

    document_acl_update(
        document=forecast,
        allow_users=[],
        allow_groups=[],
        all_authenticated=False,
        actor_id=user_named("admin").pk,
    )
    after = _chat(client, headers, FORECAST_QUESTION)
    assert forecast.pk not in {c["document"] for c in after["citations"]}
    assert not any(fact in after["answer"] for fact in FORECAST_FACTS)
    change = AuditEvent.objects.get(event_type=EventType.ACL_CHANGED)
    assert change.metadata["old"]["groups"] == [Group.objects.get(name="finance").pk]
    assert change.metadata["new"]["groups"] == []


@pytest.mark.usefixtures("demo")
def test_turn_is_recorded_with_audit_metadata_but_no_prompt_text(client, bearer):
    reply = _chat(client, bearer("alice"), FORECAST_QUESTION)
    conversation = Conversation.objects.get(pk=reply["conversation"])
    assert [m.role for m in conversation.messages.all()] == ["user", "assistant"]
    event = AuditEvent.objects.get(event_type=EventType.CHAT_TURN)
    assert event.request_id == reply["request_id"]
    assert event.metadata["provider"] == "local"
    assert _forecast().pk in event.metadata["context_documents"]
    assert set(event.metadata["cited_chunks"]) <= set(event.metadata["context_chunks"])
    serialized = json.dumps(event.metadata) + event.subject + event.reason
    assert FORECAST_QUESTION not in serialized
    assert "revenue" not in serialized.lower()


@pytest.mark.usefixtures("demo")
def test_follow_up_goes_into_the_same_conversation(client, bearer):
    headers = bearer("bob")
    first = _chat(client, headers, "How do I promote a PostgreSQL replica?")
    second = _chat(
        client, headers, "What replication lag is acceptable?", conversation=first["conversation"]
    )
    assert second["conversation"] == first["conversation"]
    detail = client.get(f"/api/v1/conversations/{first['conversation']}", **headers).json()
    assert len(detail["messages"]) == 4
    listing = client.get("/api/v1/conversations", **headers).json()
    assert [c["id"] for c in listing["conversations"]] == [first["conversation"]]


@pytest.mark.usefixtures("demo")
def test_revoked_citation_shows_as_no_longer_available(client, bearer, user_named):
    headers = bearer("alice")
    reply = _chat(client, headers, FORECAST_QUESTION)
    forecast = _forecast()
    document_acl_update(
        document=forecast,
        allow_users=[],
        allow_groups=[],
        all_authenticated=False,
        actor_id=user_named("admin").pk,
    )
    detail = client.get(f"/api/v1/conversations/{reply['conversation']}", **headers).json()
    cites = [c for m in detail["messages"] for c in m["citations"] if c["document"] == forecast.pk]
    assert cites
    assert all(c["available"] is False and c["title"] is None for c in cites)


@pytest.mark.usefixtures("demo")
def test_search_returns_only_readable_chunks(client, bearer):
    forecast = _forecast()
    bob = client.get(
        "/api/v1/search",
        {"q": "revenue forecast Halvorsen", "k": 10},
        **bearer("bob", frozenset({"search"})),
    ).json()
    assert forecast.pk not in {r["document"] for r in bob["results"]}
    alice = client.get(
        "/api/v1/search",
        {"q": "revenue forecast Halvorsen", "k": 10},
        **bearer("alice", frozenset({"search"})),
    ).json()
    assert alice["results"][0]["document"] == forecast.pk


@pytest.mark.usefixtures("demo")
def test_documents_lists_only_readable_documents(client, bearer):
    titles = {
        d["title"] for d in client.get("/api/v1/documents", **bearer("bob")).json()["documents"]
    }
    assert FORECAST_TITLE not in titles
    assert "PostgreSQL Failover Runbook" in titles
    alice_titles = {
        d["title"] for d in client.get("/api/v1/documents", **bearer("alice")).json()["documents"]
    }
    assert FORECAST_TITLE in alice_titles
    assert "PostgreSQL Failover Runbook" not in alice_titles
