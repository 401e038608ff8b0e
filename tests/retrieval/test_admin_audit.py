"""Tier and ACL edits in Django admin are audited with old and new values; deletions too."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from app.models import Citation
from audit.models import AuditEvent, EventType
from retrieval.models import Chunk, Document

FORECAST = "Q3 2026 Revenue Forecast"


def _change_form(document: Document, **overrides: object) -> dict[str, object]:
    form: dict[str, object] = {
        "title": document.title,
        "classification": document.classification,
        "allowed_users": [u.pk for u in document.allowed_users.all()],
        "allowed_groups": [g.pk for g in document.allowed_groups.all()],
        "jobs-TOTAL_FORMS": "0",
        "jobs-INITIAL_FORMS": "0",
        "jobs-MIN_NUM_FORMS": "0",
        "jobs-MAX_NUM_FORMS": "0",
    }
    if document.all_authenticated:
        form["all_authenticated"] = "on"
    form.update(overrides)
    return form


@pytest.mark.usefixtures("demo")
def test_admin_acl_and_tier_edit_is_audited_with_old_and_new(client, user_named):
    client.force_login(user_named("admin"))
    forecast = Document.objects.get(title=FORECAST)
    engineering = Group.objects.get(name="engineering")
    response = client.post(
        f"/admin/retrieval/document/{forecast.pk}/change/",
        _change_form(forecast, classification=1, allowed_groups=[engineering.pk]),
    )
    assert response.status_code == 302, response.content[:2000]
    event = AuditEvent.objects.get(event_type=EventType.ACL_CHANGED)
    assert event.actor_id == user_named("admin").pk
    assert event.metadata["old"]["tier"] == "confidential"
    assert event.metadata["new"]["tier"] == "internal"
    assert event.metadata["old"]["groups"] == [Group.objects.get(name="finance").pk]
    assert event.metadata["new"]["groups"] == [engineering.pk]


@pytest.mark.usefixtures("demo")
def test_admin_save_without_access_change_writes_no_acl_event(client, user_named):
    client.force_login(user_named("admin"))
    forecast = Document.objects.get(title=FORECAST)
    response = client.post(
        f"/admin/retrieval/document/{forecast.pk}/change/",
        _change_form(forecast, title="Q3 2026 Revenue Forecast (v2)"),
    )
    assert response.status_code == 302
    assert not AuditEvent.objects.filter(event_type=EventType.ACL_CHANGED).exists()


@pytest.mark.usefixtures("demo")
def test_admin_delete_removes_chunks_and_is_audited(client, user_named, bearer):
    alice = bearer("alice")
    reply = client.post(
        "/api/v1/chat", data={"message": "What is the Q3 2026 revenue forecast?"},
        content_type="application/json", **alice,
    ).json()  # fmt: skip
    client.force_login(user_named("admin"))
    forecast = Document.objects.get(title=FORECAST)
    chunks = Chunk.objects.filter(document=forecast).count()
    assert chunks
    response = client.post(f"/admin/retrieval/document/{forecast.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not Document.objects.filter(pk=forecast.pk).exists()
    assert not Chunk.objects.filter(document_id=forecast.pk).exists()
    event = AuditEvent.objects.get(event_type=EventType.DOCUMENT_DELETED)
    assert event.subject == f"document:{forecast.pk}"
    assert event.metadata["chunks"] == chunks
    assert Citation.objects.filter(document_id=forecast.pk).exists()  # history is kept...
    detail = client.get(f"/api/v1/conversations/{reply['conversation']}", **alice).json()
    cited = [c for m in detail["messages"] for c in m["citations"]]
    assert cited
    assert all(c["available"] is False and c["title"] is None for c in cited)  # ...but hidden
