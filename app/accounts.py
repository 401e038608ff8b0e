"""allauth integration: closed sign-up, audited sign-in failures, the client IP as the app
sees it (forwarded headers only from trusted proxies), and a honeypot on the login form."""

from __future__ import annotations

from typing import Any

from allauth.account.adapter import DefaultAccountAdapter
from allauth.account.forms import LoginForm
from django import forms
from django.conf import settings
from django.http import HttpRequest

from app.auth_events import login_failed_record
from app.net import client_ip
from app.services import login_failure_signal
from audit.models import EventType
from audit.services import audit_record

HONEYPOT_FIELD = "website"


class ClosedSignupAdapter(DefaultAccountAdapter):
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return bool(settings.ACCOUNT_ALLOW_SIGNUPS)

    def get_client_ip(self, request: HttpRequest) -> str:
        # allauth's login rate limits count per this address.
        return client_ip(request)

    def pre_authenticate(self, request: HttpRequest, **credentials: Any) -> None:
        try:
            super().pre_authenticate(request, **credentials)
        except forms.ValidationError:
            audit_record(
                event_type=EventType.RATE_LIMITED,
                actor_id=None,
                request_id=str(getattr(request, "request_id", "")),
                decision="refused",
                reason="login_failed",
                metadata={"per": "allauth", "path": request.path[:200]},
            )
            raise

    def authentication_failed(self, request: HttpRequest, **credentials: Any) -> None:
        login = str(credentials.get("username") or credentials.get("email") or "")
        login_failed_record(request=request, login=login, reason="bad_credentials")
        login_failure_signal(login=login, request_id=str(getattr(request, "request_id", "")))


class HoneypotLoginForm(LoginForm):
    """A field people never see (hidden by CSS, skipped by keyboard and screen readers) and
    bots fill in. A filled honeypot fails the login without trying the password, so a bot
    learns nothing about the credentials it sent."""

    website = forms.CharField(required=False, max_length=200)

    def clean(self) -> dict[str, Any]:
        if self.data.get(HONEYPOT_FIELD):
            login_failed_record(
                request=self.request, login=str(self.data.get("login", "")), reason="honeypot"
            )
            raise forms.ValidationError(
                "The username and/or password you specified are not correct."
            )
        return super().clean()  # type: ignore[no-any-return]
