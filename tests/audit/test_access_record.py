"""Per-answer access records answer "who could have seen document D, and when?"."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from audit.models import AuditEvent, EventType
from retrieval.models import Document

FORECAST = "Q3 2026 Revenue Forecast"
QUESTION = "What is the Q3 2026 revenue forecast for Halvorsen Logistics?"


def _chat(client, headers, message=QUESTION):
    response = client.post(
        "/api/v1/chat", data=json.dumps({"message": message}), content_type="application/json",
        **headers,
    )  # fmt: skip
    assert response.status_code == 200, response.content
    return response.json()


@pytest.mark.usefixtures("demo")
def test_chat_turn_records_documents_versions_chunks_and_acl_grounds(client, bearer):
    reply = _chat(client, bearer("alice"))
    forecast = Document.objects.get(title=FORECAST)
    event = AuditEvent.objects.get(event_type=EventType.CHAT_TURN, request_id=reply["request_id"])
    meta = event.metadata
    shown = {c["document"]: c for c in meta["context"]}
    assert shown[forecast.pk]["version"] == forecast.version
    assert set(shown[forecast.pk]["chunks"]) <= set(forecast.chunks.values_list("pk", flat=True))
    assert sorted(c for entry in meta["context"] for c in entry["chunks"]) == sorted(
        meta["context_chunks"]
    )
    assert meta["acl"]["decision"] == "permitted"
    assert meta["acl"]["clearance"] == "confidential"
    assert meta["acl"]["groups"] == ["finance"]
    assert event.actor_id is not None
    assert event.token_id


@pytest.mark.usefixtures("demo")
def test_search_and_document_views_are_audited_as_data_access(client, bearer, user_named):
    forecast = Document.objects.get(title=FORECAST)
    response = client.get("/api/v1/search", {"q": "revenue forecast"}, **bearer("alice"))
    assert response.status_code == 200
    search = AuditEvent.objects.get(event_type=EventType.RETRIEVAL_ACCESS)
    returned = {r["chunk"] for r in response.json()["results"]}
    assert set(search.metadata["context_chunks"]) == returned

    client.force_login(user_named("alice"))
    assert client.get(f"/documents/{forecast.pk}/").status_code == 200
    view = AuditEvent.objects.get(event_type=EventType.DOCUMENT_VIEWED)
    assert view.metadata["context_documents"] == [forecast.pk]


@pytest.mark.usefixtures("demo")
def test_refused_document_view_is_not_recorded_as_access(client, user_named):
    forecast = Document.objects.get(title=FORECAST)
    client.force_login(user_named("bob"))
    assert client.get(f"/documents/{forecast.pk}/").status_code == 404
    assert not AuditEvent.objects.filter(event_type=EventType.DOCUMENT_VIEWED).exists()


@pytest.mark.usefixtures("demo")
def test_audit_access_names_who_saw_the_document_and_not_who_did_not(client, bearer):
    alice = _chat(client, bearer("alice"))
    bob = _chat(client, bearer("bob"))
    forecast = Document.objects.get(title=FORECAST)
    out = StringIO()
    call_command("audit_access", "--document", str(forecast.pk), stdout=out)
    lines = out.getvalue().splitlines()
    turns = [line for line in lines if "chat.turn" in line]
    assert len(turns) == 1
    assert "actor=alice" in turns[0]
    assert f"request={alice['request_id']}" in turns[0]
    assert f"versions={forecast.version}" in turns[0]
    assert not any(bob["request_id"] in line for line in lines)
    assert any("document.ingested" in line for line in lines)


@pytest.mark.usefixtures("demo")
def test_no_audit_event_holds_prompt_text_or_answer(client, bearer):
    secret_question = "Does jane.doe@example.com at 555-0134 get the Halvorsen Logistics bonus?"
    reply = _chat(client, bearer("alice"), secret_question)
    dump = json.dumps([
        [e.subject, e.reason, e.decision, e.metadata] for e in AuditEvent.objects.all()
    ])  # fmt: skip
    for fragment in ("jane.doe", "555-0134", "bonus", reply["answer"][:40]):
        assert fragment not in dump


@pytest.mark.usefixtures("demo")
def test_export_jsonl_by_time_range(client, bearer):
    _chat(client, bearer("alice"))
    total = AuditEvent.objects.count()
    out = StringIO()
    call_command("audit_export", stdout=out)
    rows = [json.loads(line) for line in out.getvalue().splitlines()]
    assert len(rows) == total
    assert {"id", "time", "event_type", "row_hash", "prev_hash"} <= set(rows[0])

    future = (timezone.now() + timedelta(hours=1)).isoformat()
    out = StringIO()
    call_command("audit_export", "--since", future, stdout=out)
    assert out.getvalue() == ""

    out = StringIO()
    call_command("audit_export", "--format", "ocsf", stdout=out)
    ocsf = [json.loads(line) for line in out.getvalue().splitlines()]
    assert {r["class_uid"] for r in ocsf} == {6003}
    assert all(isinstance(r["time"], int) for r in ocsf)


@pytest.mark.django_db
def test_export_rejects_a_time_without_zone():
    with pytest.raises(CommandError, match="zone"):
        call_command("audit_export", "--since", "2026-11-01T00:00", stdout=StringIO())


@pytest.mark.usefixtures("demo")
def test_admin_audit_search_by_document_and_actor(client, bearer, user_named):
    alice_reply = _chat(client, bearer("alice"))
    bob_reply = _chat(client, bearer("bob"))
    forecast = Document.objects.get(title=FORECAST)
    client.force_login(user_named("admin"))
    page = client.get("/admin/audit/auditevent/", {"q": f"document:{forecast.pk}"})
    assert page.status_code == 200
    ids = {e.pk for e in page.context["cl"].result_list}
    alice_turn = AuditEvent.objects.get(
        request_id=alice_reply["request_id"], event_type=EventType.CHAT_TURN
    )
    bob_turn = AuditEvent.objects.get(
        request_id=bob_reply["request_id"], event_type=EventType.CHAT_TURN
    )
    assert alice_turn.pk in ids
    assert bob_turn.pk not in ids
    page = client.get("/admin/audit/auditevent/", {"q": f"actor:{user_named('bob').pk}"})
    assert {e.actor_id for e in page.context["cl"].result_list} == {user_named("bob").pk}
