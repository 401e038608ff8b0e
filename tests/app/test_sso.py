"""Optional OIDC single sign-on (allauth openid_connect) against a loopback identity
provider: off by default, sign-up only through SSO, group claims mapped (unknown ignored,
dropped ones removed), tokens for another audience or issuer refused, a wrong client
secret refused, and staff signed in through SSO still need MFA for admin pages."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from django.contrib.auth.models import Group
from django.test import Client

from app.models import User
from audit.models import AuditEvent, EventType
from tests.app.oidc_idp import OidcProvider, start

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/oidc/sso/login/"
GROUP_MAP = {"idp-finance": "finance", "idp-engineering": "engineering"}


@pytest.fixture
def idp(settings, monkeypatch) -> Iterator[OidcProvider]:
    provider = OidcProvider(client_id="secure-genai", client_secret=secrets.token_urlsafe(24))
    server, thread = start(provider)
    monkeypatch.setenv("TEST_SSO_CLIENT_SECRET", provider.client_secret)
    settings.SSO_OIDC_ENABLED = True
    settings.SSO_OIDC_PROVIDER_ID = "sso"
    settings.SSO_OIDC_ISSUER = provider.base_url
    settings.SSO_OIDC_CLIENT_ID = provider.client_id
    settings.SSO_OIDC_CLIENT_SECRET_REF = "env:TEST_SSO_CLIENT_SECRET"
    settings.SSO_OIDC_GROUPS_CLAIM = "groups"
    settings.SSO_OIDC_GROUP_MAP = GROUP_MAP
    yield provider
    server.shutdown()
    server.server_close()
    thread.join(timeout=5)


def _identity(username: str, groups: list[str]) -> dict[str, object]:
    return {
        "sub": f"idp-{username}",
        "preferred_username": username,
        "email": f"{username}@corp.example",
        "email_verified": True,
        "groups": groups,
    }


def sso_sign_in(client: Client) -> Any:
    """Drive the authorization-code flow: Django → IdP authorize → Django callback."""
    start_response = client.post(LOGIN)
    assert start_response.status_code == 302, start_response.content[:500]
    authorize = start_response["Location"]
    query = parse_qs(urlsplit(authorize).query)
    assert query["code_challenge_method"] == ["S256"]  # PKCE on
    idp_reply = httpx.get(authorize, follow_redirects=False, timeout=10)
    assert idp_reply.status_code == 302, idp_reply.text
    callback = urlsplit(idp_reply.headers["location"])
    return client.get(f"{callback.path}?{callback.query}")


def test_sso_is_off_by_default(client):
    assert client.post(LOGIN).status_code == 404
    assert client.get(LOGIN).status_code == 404
    assert "Sign in with" not in client.get("/accounts/login/").content.decode()


def test_login_page_offers_sso_when_enabled(idp, client):
    page = client.get("/accounts/login/").content.decode()
    assert f'action="{LOGIN}"' in page
    assert "Sign in with Single sign-on" in page


def test_sso_signs_up_a_new_user_and_maps_group_claims(idp, client):
    idp.identity = _identity("grace", ["idp-finance", "idp-unknown-team"])
    response = sso_sign_in(client)
    assert response.status_code == 302, response.content[:1000]
    assert response["Location"] == "/"
    grace = User.objects.get(username="grace")
    assert grace.email == "grace@corp.example"
    assert sorted(grace.groups.values_list("name", flat=True)) == ["finance"]
    assert client.get("/").status_code == 200  # signed in
    event = AuditEvent.objects.filter(event_type=EventType.SSO_GROUPS_SYNCED).latest("id")
    assert event.metadata == {"added": ["finance"], "removed": [], "ignored": 1}
    assert idp.token_requests[-1]["client_secret"] == idp.client_secret  # from the secret ref

    # A group granted by hand (not managed by the mapping) survives; the claim changes.
    grace.groups.add(Group.objects.get_or_create(name="auditors")[0])
    idp.identity = _identity("grace", ["idp-engineering"])
    other = Client()
    assert sso_sign_in(other).status_code == 302
    assert sorted(grace.groups.values_list("name", flat=True)) == ["auditors", "engineering"]
    assert User.objects.filter(username__startswith="grace").count() == 1  # same account

    # The claim drops every mapped group: they go.
    idp.identity = _identity("grace", [])
    assert sso_sign_in(Client()).status_code == 302
    assert sorted(grace.groups.values_list("name", flat=True)) == ["auditors"]


def test_local_sign_up_stays_closed_when_sso_is_on(idp, client):
    page = client.get("/accounts/signup/")
    assert "Sign Up Closed" in page.content.decode()
    response = client.post(
        "/accounts/signup/",
        {
            "username": "mallory",
            "email": "mallory@example.com",
            "password1": "mallory-pass-phrase-2026",
            "password2": "mallory-pass-phrase-2026",
        },
    )
    assert response.status_code in (200, 302)
    assert not User.objects.filter(username="mallory").exists()


@pytest.mark.parametrize(
    "override", [{"aud": "another-client"}, {"iss": "https://evil.example"}, {"exp": 1}]
)
def test_id_tokens_for_another_audience_issuer_or_expired_are_refused(idp, client, override):
    idp.identity = _identity("heidi", ["idp-finance"])
    idp.id_token_overrides = override
    response = sso_sign_in(client)
    assert not User.objects.filter(username="heidi").exists()
    assert response.status_code == 401  # allauth's authentication-error page
    assert idp.token_requests  # refused after the token came back, on its claims
    assert client.get("/").status_code == 302  # not signed in


def test_a_wrong_client_secret_fails_the_sign_in(idp, client, monkeypatch):
    monkeypatch.setenv("TEST_SSO_CLIENT_SECRET", "not-the-secret")
    idp.identity = _identity("ivan", [])
    sso_sign_in(client)
    assert not User.objects.filter(username="ivan").exists()
    assert client.get("/").status_code == 302


def test_staff_signed_in_through_sso_still_need_mfa_for_admin(idp, client):
    idp.identity = _identity("judy", [])
    assert sso_sign_in(client).status_code == 302
    User.objects.filter(username="judy").update(is_staff=True, is_superuser=True)
    staff = Client()
    assert sso_sign_in(staff).status_code == 302
    admin = staff.get("/admin/")
    assert admin.status_code == 302
    assert "/accounts/2fa/" in admin["Location"]
