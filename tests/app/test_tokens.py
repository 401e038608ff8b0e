"""API tokens: only a keyed hash is stored, lifetimes are short and bounded, scopes are
closed and enforced, every issue is audited."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from app.identity import ALL_SCOPES
from app.models import ApiToken
from app.services import TokenError, token_authenticate, token_hash, token_issue, token_revoke
from audit.models import AuditEvent, EventType


@pytest.mark.usefixtures("demo")
def test_raw_token_is_never_stored_only_its_keyed_hash(user_named):
    raw, token = token_issue(user=user_named("bob"), scopes=ALL_SCOPES)
    row = ApiToken.objects.filter(pk=token.pk).values().get()
    assert raw.startswith("sgr_")
    assert row["token_hash"] != raw
    assert row["token_hash"] == token_hash(raw)
    assert len(row["token_hash"]) == 64
    assert raw not in json.dumps(row, default=str)
    assert raw[4:] not in json.dumps(row, default=str)
    events = AuditEvent.objects.filter(token_id=str(token.pk)).values()
    assert events
    assert raw[4:] not in json.dumps(list(events), default=str)


@pytest.mark.usefixtures("demo")
def test_token_hash_is_keyed_by_the_secret_key(settings):
    raw = "sgr_example-token-value"
    first = token_hash(raw)
    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789abcdef"
    assert token_hash(raw) != first


@pytest.mark.usefixtures("demo")
def test_default_token_lifetime_is_at_most_fifteen_minutes(user_named, settings):
    assert settings.API_TOKEN_DEFAULT_TTL_S <= 900
    before = timezone.now()
    _, token = token_issue(user=user_named("bob"), scopes=ALL_SCOPES)
    lifetime = token.expires_at - before
    assert timedelta(seconds=0) < lifetime <= timedelta(seconds=900, milliseconds=500)


@pytest.mark.usefixtures("demo")
def test_token_ttl_at_the_maximum_is_accepted(user_named, settings):
    _, token = token_issue(
        user=user_named("bob"), scopes=ALL_SCOPES, ttl_s=settings.API_TOKEN_MAX_TTL_S
    )
    assert token.expires_at - timezone.now() <= timedelta(seconds=settings.API_TOKEN_MAX_TTL_S)


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("ttl", [0, -1, "max+1", 10**9])
def test_token_ttl_out_of_range_is_rejected(user_named, settings, ttl):
    ttl_s = settings.API_TOKEN_MAX_TTL_S + 1 if ttl == "max+1" else ttl
    before = ApiToken.objects.count(), AuditEvent.objects.count()
    with pytest.raises(TokenError, match="ttl"):
        token_issue(user=user_named("bob"), scopes=ALL_SCOPES, ttl_s=ttl_s)
    assert (ApiToken.objects.count(), AuditEvent.objects.count()) == before


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    "scopes", [frozenset({"admin"}), frozenset({"chat", "write"}), frozenset()]
)
def test_unknown_or_empty_scope_is_rejected(user_named, scopes):
    before = ApiToken.objects.count()
    with pytest.raises(TokenError, match="scopes"):
        token_issue(user=user_named("bob"), scopes=scopes)
    assert ApiToken.objects.count() == before


@pytest.mark.usefixtures("demo")
def test_token_for_inactive_user_is_refused_and_stops_working(user_named):
    bob = user_named("bob")
    raw, _ = token_issue(user=bob, scopes=ALL_SCOPES)
    bob.is_active = False
    bob.save(update_fields=["is_active"])
    assert token_authenticate(raw) is None
    with pytest.raises(TokenError, match="inactive"):
        token_issue(user=bob, scopes=ALL_SCOPES)


@pytest.mark.usefixtures("demo")
def test_token_issue_writes_a_token_issued_audit_event(user_named):
    bob = user_named("bob")
    admin = user_named("admin")
    _, token = token_issue(
        user=bob,
        scopes=frozenset({"search", "chat"}),
        ttl_s=120,
        actor_id=admin.pk,
        request_id="req-token-audit",
    )
    event = AuditEvent.objects.get(event_type=EventType.TOKEN_ISSUED, token_id=str(token.pk))
    assert event.subject == f"user:{bob.pk}"
    assert event.actor_id == admin.pk
    assert event.request_id == "req-token-audit"
    assert event.decision == "issued"
    assert event.metadata == {"scopes": ["chat", "search"], "ttl_s": 120}


@pytest.mark.usefixtures("demo")
def test_token_authenticate_accepts_live_token_and_refuses_revoked_expired_or_altered(
    user_named,
):
    raw, token = token_issue(user=user_named("bob"), scopes=ALL_SCOPES)
    assert token_authenticate(raw) == token
    assert token_authenticate(raw[:-1] + ("A" if raw[-1] != "A" else "B")) is None
    assert token_authenticate(raw[4:]) is None  # without the prefix
    assert token_authenticate(raw + "x" * 200) is None

    token_revoke(token=token, actor_id=None)
    assert token_authenticate(raw) is None
    assert AuditEvent.objects.filter(
        event_type=EventType.TOKEN_REVOKED, token_id=str(token.pk)
    ).exists()

    raw2, token2 = token_issue(user=user_named("bob"), scopes=ALL_SCOPES)
    ApiToken.objects.filter(pk=token2.pk).update(expires_at=timezone.now())
    assert token_authenticate(raw2) is None


@pytest.mark.usefixtures("demo")
def test_token_scopes_are_enforced_by_the_api(client, bearer):
    search_only = bearer("bob", frozenset({"search"}))
    assert client.get("/api/v1/search", {"q": "per diem"}, **search_only).status_code == 200
    assert client.get("/api/v1/documents", **search_only).status_code == 403
    assert client.get("/api/v1/conversations", **search_only).status_code == 403

    documents_only = bearer("bob", frozenset({"documents"}))
    assert client.get("/api/v1/documents", **documents_only).status_code == 200
    assert client.get("/api/v1/search", {"q": "per diem"}, **documents_only).status_code == 403


@pytest.mark.usefixtures("demo")
def test_issue_token_command_prints_a_working_token_on_stdout(client, user_named):
    out, err = StringIO(), StringIO()
    call_command(
        "issue_token", "bob", "--scopes", "documents", "--ttl", "120", stdout=out, stderr=err
    )
    raw = out.getvalue().strip()
    assert raw.startswith("sgr_")
    assert "\n" not in raw
    assert raw not in err.getvalue()  # the details line on stderr never repeats the secret
    assert "bob" in err.getvalue()

    token = ApiToken.objects.get(user=user_named("bob"))
    assert token.scopes == ["documents"]
    assert token.token_hash == token_hash(raw)

    response = client.get("/api/v1/documents", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    titles = {d["title"] for d in response.json()["documents"]}
    assert "PostgreSQL Failover Runbook" in titles
    assert "Q3 2026 Revenue Forecast" not in titles
    assert (
        client.get("/api/v1/search", {"q": "x"}, HTTP_AUTHORIZATION=f"Bearer {raw}").status_code
        == 403
    )


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("nobody",), "no such user"),
        (("bob", "--ttl", "0"), "ttl"),
        (("bob", "--ttl", "999999"), "ttl"),
        (("bob", "--scopes", "chat,admin"), "scopes"),
    ],
)
def test_issue_token_command_rejects_bad_requests(args, message):
    with pytest.raises(CommandError, match=message):
        call_command("issue_token", *args, stdout=StringIO(), stderr=StringIO())
    assert not ApiToken.objects.exists()
