"""Audit of sign-in and MFA: login.succeeded, login.failed, mfa.changed.

Attempted login names and client addresses are stored as keyed digests: an investigator can
match a known name or address, the trail names nobody (a password typed into the login
field must not end up in the audit log)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from app.net import client_ip
from app.services import _keyed_digest, login_failure_signal
from audit.models import EventType
from audit.services import audit_record


def login_digest(login: str) -> str:
    return _keyed_digest(b"login-name", login.strip().lower())[:32]


def ip_digest(ip: str) -> str:
    return _keyed_digest(b"client-ip", ip)[:32]


def _request_id(request: HttpRequest | None) -> str:
    return str(getattr(request, "request_id", "") or "")


def _ip(request: HttpRequest | None) -> str:
    return ip_digest(client_ip(request)) if request is not None else ""


def login_succeeded_record(*, request: HttpRequest | None, user: Any, methods: list[str]) -> None:
    audit_record(
        event_type=EventType.LOGIN_SUCCEEDED,
        actor_id=user.pk,
        request_id=_request_id(request),
        subject=f"user:{user.pk}",
        decision="succeeded",
        metadata={"methods": methods, "ip_hmac": _ip(request), "staff": bool(user.is_staff)},
    )


def login_failed_record(
    *, request: HttpRequest | None, login: str, reason: str, user_id: int | None = None
) -> None:
    audit_record(
        event_type=EventType.LOGIN_FAILED,
        actor_id=user_id,
        request_id=_request_id(request),
        subject=f"user:{user_id}" if user_id else "",
        decision="failed",
        reason=reason,
        metadata={"login_hmac": login_digest(login) if login else "", "ip_hmac": _ip(request)},
    )


def mfa_changed_record(
    *, request: HttpRequest | None, user: Any, change: str, authenticator_type: str
) -> None:
    audit_record(
        event_type=EventType.MFA_CHANGED,
        actor_id=user.pk,
        request_id=_request_id(request),
        subject=f"user:{user.pk}",
        decision=change,
        metadata={"type": authenticator_type, "ip_hmac": _ip(request)},
    )


def connect_signals() -> None:
    """Wire allauth's sign-in and MFA signals to the audit trail (AppConfig.ready)."""
    from allauth.account.authentication import get_authentication_records
    from allauth.account.signals import user_logged_in
    from allauth.mfa import signals as mfa

    def on_login(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
        methods = sorted({str(r.get("method")) for r in get_authentication_records(request, user)})
        login_succeeded_record(request=request, user=user, methods=methods)

    def on_mfa_failed(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
        login_failed_record(request=request, login="", reason="mfa_code", user_id=user.pk)
        login_failure_signal(user_id=user.pk, request_id=_request_id(request))

    def on_change(change: str) -> Any:
        def receiver(sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
            authenticator = kwargs.get("authenticator")
            kind = str(getattr(authenticator, "type", "") or "")
            mfa_changed_record(request=request, user=user, change=change, authenticator_type=kind)

        return receiver

    user_logged_in.connect(on_login, dispatch_uid="audit-login-succeeded", weak=False)
    mfa.authentication_failed.connect(on_mfa_failed, dispatch_uid="audit-mfa-failed", weak=False)
    for signal, change in (
        (mfa.authenticator_added, "added"),
        (mfa.authenticator_removed, "removed"),
        (mfa.authenticator_reset, "reset"),
    ):
        signal.connect(on_change(change), dispatch_uid=f"audit-mfa-{change}", weak=False)
