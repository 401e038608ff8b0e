"""Staff cannot read users' conversations unless they break the glass: a reason, a time
limit, and an audit event for the grant and for every conversation opened under it."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest

from app.models import BreakGlassGrant, Conversation
from app.services import BreakGlassRefused, break_glass_open
from audit.models import AuditEvent, EventType

REASON = "Incident INC-2026-114: user reported a leaked forecast figure"


@pytest.fixture
def alice_conversation(client, bearer) -> Conversation:
    response = client.post(
        "/api/v1/chat", data=json.dumps({"message": "What is the travel per diem?"}),
        content_type="application/json", **bearer("alice"),
    )  # fmt: skip
    return Conversation.objects.get(pk=response.json()["conversation"])


@pytest.mark.usefixtures("demo")
def test_staff_without_a_grant_cannot_read_conversations(client, user_named, alice_conversation):
    client.force_login(user_named("admin"))
    listing = client.get("/admin/app/conversation/")
    assert listing.status_code == 200
    assert list(listing.context["cl"].result_list) == []
    page = client.get(f"/admin/app/conversation/{alice_conversation.pk}/change/")
    assert page.status_code == 302  # "does not exist" redirect, nothing shown
    assert "per diem" not in page.content.decode()
    assert not AuditEvent.objects.filter(event_type=EventType.ADMIN_VIEWED_USER_DATA).exists()


@pytest.mark.usefixtures("demo")
def test_break_glass_grants_time_limited_audited_access(client, user_named, alice_conversation):
    admin, alice = user_named("admin"), user_named("alice")
    client.force_login(admin)
    response = client.post(
        "/admin/app/breakglassgrant/add/",
        {"subject": alice.pk, "reason": REASON, "minutes": 10},
    )
    assert response.status_code == 302, response.content[:1500]
    grant = BreakGlassGrant.objects.get()
    assert grant.staff == admin
    assert timedelta(minutes=9) < grant.expires_at - grant.created_at <= timedelta(minutes=10)
    opened = AuditEvent.objects.get(event_type=EventType.BREAK_GLASS_OPENED)
    assert opened.subject == f"user:{alice.pk}"
    assert REASON not in json.dumps(opened.metadata)

    page = client.get(f"/admin/app/conversation/{alice_conversation.pk}/change/")
    assert page.status_code == 200
    assert "per diem" in page.content.decode()
    client.get(f"/admin/app/conversation/{alice_conversation.pk}/change/")
    views = AuditEvent.objects.filter(event_type=EventType.ADMIN_VIEWED_USER_DATA)
    assert views.count() == 2
    assert {v.subject for v in views} == {f"conversation:{alice_conversation.pk}"}

    BreakGlassGrant.objects.update(expires_at=grant.created_at)  # the grant runs out
    page = client.get(f"/admin/app/conversation/{alice_conversation.pk}/change/")
    assert page.status_code == 302
    assert views.count() == 2


@pytest.mark.usefixtures("demo")
def test_break_glass_needs_a_reason_a_bounded_duration_and_staff(user_named):
    admin, alice, bob = user_named("admin"), user_named("alice"), user_named("bob")
    with pytest.raises(BreakGlassRefused, match="reason"):
        break_glass_open(staff=admin, subject=alice, reason="because", minutes=10)
    with pytest.raises(BreakGlassRefused, match="duration"):
        break_glass_open(staff=admin, subject=alice, reason=REASON, minutes=24 * 60)
    with pytest.raises(BreakGlassRefused, match="staff"):
        break_glass_open(staff=bob, subject=alice, reason=REASON, minutes=10)
    assert not BreakGlassGrant.objects.exists()


@pytest.mark.usefixtures("demo")
def test_admin_form_refuses_a_thin_reason_without_a_server_error(client, user_named):
    client.force_login(user_named("admin"))
    response = client.post(
        "/admin/app/breakglassgrant/add/",
        {"subject": user_named("alice").pk, "reason": "look", "minutes": 10},
    )
    assert response.status_code == 200
    assert "at least" in response.content.decode()
    assert not BreakGlassGrant.objects.exists()
