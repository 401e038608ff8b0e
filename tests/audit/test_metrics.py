"""Prometheus metrics: served only to loopback clients or staff; requests, pipeline steps
and every audited decision are counted."""

from __future__ import annotations

import json
import re

import pytest
from django.test import Client
from prometheus_client.parser import text_string_to_metric_families

from audit.models import EventType
from audit.services import audit_record

REMOTE = {"REMOTE_ADDR": "203.0.113.7"}


def _sample(text: str, name: str, **labels: str) -> float:
    """The sum of the samples named `name` whose labels include `labels`."""
    return sum(
        float(sample.value)
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items())
    )


def _scrape(client: Client) -> str:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    return response.content.decode()


@pytest.mark.django_db
def test_metrics_are_refused_to_a_remote_anonymous_client(client):
    response = client.get("/metrics", **REMOTE)
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert "app_http_requests_total" not in response.content.decode()


@pytest.mark.django_db
def test_metrics_are_refused_to_a_proxied_request_even_from_loopback(client):
    # The gateway connects from 127.0.0.1: what it relays must not count as local.
    response = client.get("/metrics", HTTP_X_FORWARDED_FOR="203.0.113.7")
    assert response.status_code == 403


@pytest.mark.django_db
def test_metrics_are_refused_to_a_remote_non_staff_token(client, bearer):
    response = client.get("/metrics", **REMOTE, **bearer("alice"))
    assert response.status_code == 403


@pytest.mark.django_db
def test_metrics_are_served_to_a_loopback_client(client):
    assert "app_http_requests_total" in _scrape(client)


@pytest.mark.django_db
def test_metrics_are_served_to_a_remote_staff_token(client, bearer):
    response = client.get("/metrics", **REMOTE, **bearer("admin"))
    assert response.status_code == 200


@pytest.mark.django_db
def test_metrics_are_served_to_a_remote_staff_session(client, user_named):
    client.force_login(user_named("admin"))
    response = client.get("/metrics", **REMOTE)
    assert response.status_code == 200


@pytest.mark.django_db
def test_requests_are_counted_by_route_pattern_not_by_path(client, bearer):
    headers = bearer("alice")
    before = _sample(
        _scrape(client), "app_http_requests_total",
        route="api/v1/conversations/<int:conversation_id>", status="404",
    )  # fmt: skip
    client.get("/api/v1/conversations/999999", **headers)
    text = _scrape(client)
    after = _sample(
        text, "app_http_requests_total",
        route="api/v1/conversations/<int:conversation_id>", status="404",
    )  # fmt: skip
    assert after == before + 1
    # The id is in no label (a sample *value* such as 3.4899999 may contain the digits).
    from prometheus_client.parser import text_string_to_metric_families

    labels = {
        value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        for value in sample.labels.values()
    }
    assert labels
    assert not [value for value in labels if "999999" in value]


@pytest.mark.django_db
def test_audited_decisions_are_counted_by_kind_and_reason_once_committed(
    client, django_capture_on_commit_callbacks
):
    labels = {"event_type": "chat.blocked", "decision": "blocked", "reason": "metrics_test"}
    before = _sample(_scrape(client), "app_audit_events_total", **labels)
    with django_capture_on_commit_callbacks(execute=True):
        audit_record(
            event_type=EventType.CHAT_BLOCKED, actor_id=None, decision="blocked",
            reason="metrics_test",
        )  # fmt: skip
    # Registered but never committed: not counted.
    with django_capture_on_commit_callbacks(execute=False):
        audit_record(
            event_type=EventType.CHAT_BLOCKED, actor_id=None, decision="blocked",
            reason="metrics_test",
        )  # fmt: skip
    assert _sample(_scrape(client), "app_audit_events_total", **labels) == before + 1


@pytest.mark.django_db
def test_provider_failovers_and_breakers_are_counted_from_their_audit_events(
    client, django_capture_on_commit_callbacks
):
    failover = {"event_type": "provider.failover", "decision": "failover", "reason": "timeout"}
    before = _sample(_scrape(client), "app_audit_events_total", **failover)
    with django_capture_on_commit_callbacks(execute=True):
        audit_record(
            event_type=EventType.PROVIDER_FAILOVER, actor_id=None, decision="failover",
            reason="timeout", metadata={"provider": "openai-main"},
        )  # fmt: skip
        audit_record(
            event_type=EventType.BREAKER_CHANGED, actor_id=None, decision="open",
            metadata={"provider": "openai-main", "state": "open"},
        )  # fmt: skip
    text = _scrape(client)
    assert _sample(text, "app_audit_events_total", **failover) == before + 1
    assert _sample(text, "app_provider_breaker_open", provider="openai-main") == 1


@pytest.mark.django_db
@pytest.mark.usefixtures("demo")
def test_a_chat_turn_times_every_pipeline_step(client, bearer, django_capture_on_commit_callbacks):
    steps = ("validate_input", "retrieve_context", "decide_policy")
    text = _scrape(client)
    before = {s: _sample(text, "app_pipeline_step_duration_seconds_count", step=s) for s in steps}
    turns = _sample(text, "app_chat_turn_duration_seconds_count")
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            "/api/v1/chat", data=json.dumps({"message": "What is the per diem?"}),
            content_type="application/json", **bearer("alice"),
        )  # fmt: skip
    assert response.status_code == 200
    text = _scrape(client)
    for step in steps:
        assert _sample(text, "app_pipeline_step_duration_seconds_count", step=step) == (
            before[step] + 1
        )
    assert _sample(text, "app_chat_turn_duration_seconds_count") == turns + 1
    assert not re.search(r"per diem", text)


@pytest.mark.django_db
def test_ingestion_throughput_is_counted_from_ingest_events(
    client, django_capture_on_commit_callbacks
):
    text = _scrape(client)
    documents = _sample(text, "app_ingested_documents_total")
    volume = _sample(text, "app_ingested_bytes_total")
    with django_capture_on_commit_callbacks(execute=True):
        audit_record(
            event_type=EventType.DOCUMENT_INGESTED, actor_id=None, decision="accepted",
            metadata={"bytes": 4096},
        )  # fmt: skip
    text = _scrape(client)
    assert _sample(text, "app_ingested_documents_total") == documents + 1
    assert _sample(text, "app_ingested_bytes_total") == volume + 4096


@pytest.mark.django_db
def test_requests_refused_before_url_resolution_count_under_their_route(client):
    labels = {"route": "api/v1/chat", "status": "401"}
    before = _sample(_scrape(client), "app_http_requests_total", **labels)
    response = client.post("/api/v1/chat", HTTP_AUTHORIZATION="Bearer sgr_not-a-token")
    assert response.status_code == 401
    assert _sample(_scrape(client), "app_http_requests_total", **labels) == before + 1
    client.get("/no/such/page")
    assert _sample(_scrape(client), "app_http_requests_total", route="unmatched") >= 1
