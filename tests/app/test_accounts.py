"""Sign-in, closed sign-up, per-user pages, health endpoints and security headers."""

from __future__ import annotations

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client

from app.conversation_crypto import conversation_create
from app.models import User
from retrieval.models import Document

LOGIN_URL = "/accounts/login/"
FORECAST_TITLE = "Q3 2026 Revenue Forecast"
RUNBOOK_TITLE = "PostgreSQL Failover Runbook"


def _login(client: Client, login: str, password: str):
    return client.post(LOGIN_URL, {"login": login, "password": password})


def _session_user_id(client: Client) -> str | None:
    return client.session.get(SESSION_KEY)


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("login", ["bob", "bob@example.com"])
def test_login_with_username_or_email(client, user_named, login):
    response = _login(client, login, "bob-demo-pass-2026")
    assert response.status_code == 302
    assert response["Location"] == "/"
    assert _session_user_id(client) == str(user_named("bob").pk)
    assert client.get("/").status_code == 200


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    ("login", "password"),
    [
        ("bob", "wrong-password-2026"),
        ("bob", "alice-demo-pass-2026"),  # another user's password
        ("nobody", "bob-demo-pass-2026"),
    ],
)
def test_login_with_wrong_credentials_fails(client, login, password):
    response = _login(client, login, password)
    assert response.status_code == 200  # the form again, with its error
    assert _session_user_id(client) is None
    assert client.get("/").status_code == 302


@pytest.mark.usefixtures("demo")
def test_signup_is_closed(client):
    page = client.get("/accounts/signup/")
    assert page.status_code == 200
    assert "Sign Up Closed" in page.content.decode()
    assert "<form" not in page.content.decode().split("<main>", 1)[-1]

    before = User.objects.count()
    response = client.post(
        "/accounts/signup/",
        {
            "username": "mallory",
            "email": "mallory@example.com",
            "password1": "a-strong-pass-phrase-2026",
            "password2": "a-strong-pass-phrase-2026",
        },
    )
    assert response.status_code in (200, 403)
    assert User.objects.count() == before
    assert not User.objects.filter(username="mallory").exists()
    assert _session_user_id(client) is None


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("path", ["/", "/c/1/", "/documents/1/"])
def test_pages_redirect_anonymous_users_to_login(client, path):
    response = client.get(path)
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN_URL}?next={path}"


@pytest.mark.usefixtures("demo")
def test_another_users_conversation_page_is_404(client, user_named):
    alices, _ = conversation_create(owner_id=user_named("alice").pk, title="alice's private chat")
    client.force_login(user_named("bob"))
    response = client.get(f"/c/{alices.pk}/")
    assert response.status_code == 404
    assert "alice&#x27;s private chat" not in response.content.decode()
    assert "alice's private chat" not in response.content.decode()

    client.force_login(user_named("alice"))
    own = client.get(f"/c/{alices.pk}/")
    assert own.status_code == 200
    assert "private chat" in own.content.decode()


@pytest.mark.usefixtures("demo")
def test_unreadable_document_page_is_404_and_readable_one_shows_its_title(client, user_named):
    forecast = Document.objects.get(title=FORECAST_TITLE)
    runbook = Document.objects.get(title=RUNBOOK_TITLE)

    client.force_login(user_named("bob"))
    hidden = client.get(f"/documents/{forecast.pk}/")
    assert hidden.status_code == 404
    assert FORECAST_TITLE not in hidden.content.decode()
    shown = client.get(f"/documents/{runbook.pk}/")
    assert shown.status_code == 200
    assert RUNBOOK_TITLE in shown.content.decode()

    client.force_login(user_named("alice"))
    assert client.get(f"/documents/{runbook.pk}/").status_code == 404
    page = client.get(f"/documents/{forecast.pk}/")
    assert page.status_code == 200
    assert FORECAST_TITLE in page.content.decode()


@pytest.mark.usefixtures("demo")
def test_unknown_document_page_is_404_like_an_unreadable_one(client, user_named):
    client.force_login(user_named("bob"))
    assert client.get("/documents/99999999/").status_code == 404


def test_healthz_is_ok(client, db):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_readyz_checks_database_rls_redis_and_provider(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200, response.content
    assert response.json() == {
        "status": "ready",
        "checks": {
            "database": True,
            "row_level_security": True,
            "redis": True,
            "provider": True,
        },
    }


@pytest.mark.usefixtures("demo")
def test_security_headers_on_the_chat_page(client, user_named):
    client.force_login(user_named("bob"))
    response = client.get("/")
    assert response.status_code == 200
    csp = response["Content-Security-Policy"]
    directives = {part.split()[0]: part.split()[1:] for part in csp.split(";") if part.strip()}
    assert "script-src" in directives
    assert "'unsafe-inline'" not in directives["script-src"]
    assert "'unsafe-eval'" not in directives["script-src"]
    assert directives["frame-ancestors"] == ["'none'"]
    assert directives["object-src"] == ["'none'"]
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("path", ["/", "/healthz", LOGIN_URL, "/api/v1/conversations"])
def test_permissions_policy_is_set_by_the_app_on_every_response(client, user_named, path):
    client.force_login(user_named("bob"))
    response = client.get(path)
    policy = dict(item.strip().split("=", 1) for item in response["Permissions-Policy"].split(","))
    for feature in ("camera", "microphone", "geolocation", "payment", "usb"):
        assert policy[feature] == "()"
    # WebAuthn (MFA security keys) stays available to this origin only.
    assert policy["publickey-credentials-get"] == "(self)"
    assert policy["publickey-credentials-create"] == "(self)"


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/"),
        ("get", "/healthz"),
        ("get", "/readyz"),
        ("get", LOGIN_URL),
        ("get", "/no-such-page/"),
        ("get", "/api/v1/nothing-here"),
        ("get", "/api/v1/documents"),
        ("post", "/api/v1/chat"),
    ],
)
def test_every_response_carries_a_request_id(client, method, path):
    response = getattr(client, method)(path)
    request_id = response["X-Request-ID"]
    assert 8 <= len(request_id) <= 64


@pytest.mark.usefixtures("demo")
def test_request_id_keeps_a_well_formed_upstream_id_and_replaces_a_malformed_one(client):
    assert client.get("/healthz", HTTP_X_REQUEST_ID="upstream-id-1234")["X-Request-ID"] == (
        "upstream-id-1234"
    )
    replaced = client.get("/healthz", HTTP_X_REQUEST_ID="bad id\r\nSet-Cookie: x=1")
    assert replaced["X-Request-ID"] != "bad id\r\nSet-Cookie: x=1"
    assert " " not in replaced["X-Request-ID"]
