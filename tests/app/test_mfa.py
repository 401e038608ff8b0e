"""MFA (allauth TOTP): staff reach Django admin only from a session that passed MFA; the
demo admin is enrolled; sign-ins, failures and MFA changes are audited; the login form's
honeypot and allauth's login throttle work. Everything goes through the real sign-in flow
(no force_login) so the session records are the ones allauth writes."""

from __future__ import annotations

import time
from io import StringIO

import pytest
from allauth.mfa import app_settings as mfa_settings
from allauth.mfa.models import Authenticator
from allauth.mfa.totp.internal.auth import format_hotp_value, hotp_value
from django.core.cache import cache
from django.core.management import call_command
from django.test import Client

from app.auth_events import login_digest
from app.demo.seed import DEMO_ADMIN_TOTP_SECRET
from app.models import User
from audit.models import AuditEvent, EventType

LOGIN = "/accounts/login/"
MFA_STEP = "/accounts/2fa/authenticate/"
ADMIN_PASSWORD = "admin-demo-pass-2026"  # noqa: S105 - the demo's published password


def _code(user: User, secret: str = DEMO_ADMIN_TOTP_SECRET) -> str:
    """The current TOTP code; forget that an earlier test used it (replay protection)."""
    code = format_hotp_value(hotp_value(secret, int(time.time()) // mfa_settings.TOTP_PERIOD))
    cache.delete(f"allauth.mfa.totp.used?user={user.pk}&code={code}")
    return code


def _password_step(client: Client, login: str, password: str, **extra):
    return client.post(LOGIN, {"login": login, "password": password, **extra})


def _events(kind: EventType):
    return AuditEvent.objects.filter(event_type=kind).order_by("id")


@pytest.fixture
def ops(db) -> User:
    """A staff member with a password and no authenticator yet."""
    return User.objects.create_user(
        "ops", "ops@example.com", "ops-pass-phrase-2026", is_staff=True, is_superuser=True
    )


def test_admins_own_login_form_is_replaced_by_the_mfa_capable_one(client):
    response = client.get("/admin/login/", {"next": "/admin/audit/auditevent/"})
    assert response.status_code == 302
    assert response["Location"] == f"{LOGIN}?next=%2Fadmin%2Faudit%2Fauditevent%2F"
    posted = client.post("/admin/login/", {"username": "admin", "password": ADMIN_PASSWORD})
    assert posted.status_code == 302
    assert posted["Location"].startswith(LOGIN)
    assert client.get("/admin/").status_code == 302  # not signed in by admin's form


@pytest.mark.usefixtures("demo")
def test_demo_admin_is_enrolled_and_signs_in_with_password_then_totp(client, user_named):
    admin = user_named("admin")
    assert Authenticator.objects.filter(user=admin, type=Authenticator.Type.TOTP).exists()

    response = _password_step(client, "admin", ADMIN_PASSWORD)
    assert response.status_code == 302
    assert response["Location"] == MFA_STEP
    assert client.get("/admin/").status_code == 302  # the password alone signs nobody in

    response = client.post(MFA_STEP, {"code": _code(admin)})
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200

    event = _events(EventType.LOGIN_SUCCEEDED).last()
    assert event is not None
    assert event.actor_id == admin.pk
    assert event.metadata["methods"] == ["mfa", "password"]
    assert event.metadata["staff"] is True


@pytest.mark.usefixtures("demo")
def test_wrong_totp_code_is_refused_and_audited(client, user_named):
    admin = user_named("admin")
    _password_step(client, "admin", ADMIN_PASSWORD)
    good = _code(admin)
    wrong = f"{(int(good) + 1) % 10**6:06d}"
    response = client.post(MFA_STEP, {"code": wrong})
    assert response.status_code == 200  # the form again
    assert client.get("/admin/").status_code == 302
    event = _events(EventType.LOGIN_FAILED).last()
    assert event is not None
    assert (event.actor_id, event.reason) == (admin.pk, "mfa_code")


@pytest.mark.usefixtures("demo")
def test_a_totp_code_cannot_be_replayed(user_named):
    admin = user_named("admin")
    code = _code(admin)
    first, second = Client(), Client()
    _password_step(first, "admin", ADMIN_PASSWORD)
    assert first.post(MFA_STEP, {"code": code}).status_code == 302
    _password_step(second, "admin", ADMIN_PASSWORD)
    assert second.post(MFA_STEP, {"code": code}).status_code == 200  # refused: used once
    assert second.get("/admin/").status_code == 302


def test_staff_session_without_mfa_is_refused_admin_pages_and_sent_to_enrol(client, ops):
    response = _password_step(client, "ops", "ops-pass-phrase-2026")
    assert response.status_code == 302
    assert response["Location"] == "/"  # signed in (no authenticator to ask for)
    for path in ("/admin/", "/admin/app/user/", f"/admin/app/user/{ops.pk}/change/"):
        page = client.get(path)
        assert page.status_code == 302, path
        assert page["Location"] == "/accounts/2fa/totp/activate/"
    before = User.objects.count()
    client.post("/admin/app/user/add/", {"username": "eve", "password1": "x", "password2": "x"})
    assert User.objects.count() == before


def test_staff_enrolling_totp_is_audited_and_still_must_pass_mfa(
    client, ops, django_capture_on_commit_callbacks
):
    _password_step(client, "ops", "ops-pass-phrase-2026")
    # allauth asks for the password again before any MFA change.
    assert client.get("/accounts/2fa/totp/activate/").status_code == 302
    client.post("/accounts/reauthenticate/", {"password": "ops-pass-phrase-2026"})
    page = client.get("/accounts/2fa/totp/activate/")
    assert page.status_code == 200
    secret = client.session["mfa.totp.secret"]
    with django_capture_on_commit_callbacks(execute=True):  # allauth signals on commit
        response = client.post("/accounts/2fa/totp/activate/", {"code": _code(ops, secret)})
    assert response.status_code == 302, response.content
    assert Authenticator.objects.filter(user=ops, type=Authenticator.Type.TOTP).exists()
    changed = _events(EventType.MFA_CHANGED).filter(actor_id=ops.pk)
    assert [(e.decision, e.metadata["type"]) for e in changed][:1] == [("added", "totp")]

    # Enrolling is not passing: this session signed in with a password only.
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/2fa/reauthenticate/?next=%2Fadmin%2F"
    response = client.post(
        "/accounts/2fa/reauthenticate/?next=/admin/", {"code": _code(ops, secret)}
    )
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200


@pytest.mark.usefixtures("demo")
def test_admin_mfa_requirement_holds_for_an_enrolled_admin_signed_in_without_it(client, user_named):
    """A session for an enrolled admin whose records show no MFA step (however it came
    about) is sent to re-authenticate with the second factor."""
    from allauth.account.internal.flows.login import AUTHENTICATION_METHODS_SESSION_KEY

    admin = user_named("admin")
    client.force_login(admin)
    session = client.session
    session[AUTHENTICATION_METHODS_SESSION_KEY] = [{"method": "password", "at": time.time()}]
    session.save()
    response = client.get("/admin/audit/auditevent/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/2fa/reauthenticate/")


@pytest.mark.usefixtures("demo")
def test_login_success_and_failure_are_audited_without_naming_anyone(client, user_named):
    bob = user_named("bob")
    _password_step(client, "bob", "not-bobs-password-2026")
    failed = _events(EventType.LOGIN_FAILED).last()
    assert failed is not None
    assert failed.reason == "bad_credentials"
    assert failed.metadata["login_hmac"] == login_digest("bob")
    assert "bob" not in str(failed.metadata)
    assert "not-bobs-password" not in str(failed.metadata)
    assert failed.metadata["ip_hmac"]

    _password_step(client, "bob", "bob-demo-pass-2026")
    succeeded = _events(EventType.LOGIN_SUCCEEDED).last()
    assert succeeded is not None
    assert succeeded.actor_id == bob.pk
    assert succeeded.metadata["methods"] == ["password"]


@pytest.mark.usefixtures("demo")
def test_login_honeypot_refuses_bots_even_with_the_right_password(client, user_named):
    page = client.get(LOGIN).content.decode()
    assert 'name="website"' in page
    assert 'class="hp-field"' in page
    response = _password_step(client, "bob", "bob-demo-pass-2026", website="http://spam")
    assert response.status_code == 200
    assert client.get("/").status_code == 302  # not signed in
    event = _events(EventType.LOGIN_FAILED).last()
    assert event is not None
    assert event.reason == "honeypot"


@pytest.mark.usefixtures("demo")
def test_allauth_login_throttle_locks_a_login_name_after_repeated_failures(client):
    User.objects.create_user("dave", "dave@example.com", "dave-pass-phrase-2026")
    for _ in range(5):
        _password_step(client, "dave", "wrong-pass-phrase-2026")
    response = _password_step(client, "dave", "dave-pass-phrase-2026")  # right, but locked
    assert response.status_code in (200, 429)
    assert "Too many failed login attempts" in response.content.decode()
    assert client.get("/").status_code == 302
    event = _events(EventType.RATE_LIMITED).last()
    assert event is not None
    assert event.reason == "login_failed"


@pytest.mark.usefixtures("demo")
def test_seed_demo_prints_the_admin_totp_secret_and_uri():
    out = StringIO()
    call_command("seed_demo", stdout=out)
    text = out.getvalue()
    assert DEMO_ADMIN_TOTP_SECRET in text
    assert "otpauth://totp/" in text
    assert f"secret={DEMO_ADMIN_TOTP_SECRET}" in text
