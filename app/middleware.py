"""Request id, and the one Principal per request."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

import structlog
from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.urls import reverse
from django.utils.http import urlencode

from app.logs import get_logger
from app.selectors import principal_for
from app.services import token_authenticate, token_use_record, user_log_hash
from retrieval.rls import privileged_scope

log = get_logger("app.request")
ADMIN_PREFIX = "/admin/"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")

Handler = Callable[[HttpRequest], HttpResponse]


class RequestIdMiddleware:
    """Give every request an id (a well-formed upstream X-Request-ID is kept), put it on
    every log line of the request and on the response."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        request.request_id = request_id  # type: ignore[attr-defined]
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = time.monotonic()
        response = self.get_response(request)
        response["X-Request-ID"] = request_id
        log.info(
            "request",
            method=request.method,
            path=request.path,
            status=response.status_code,
            duration_ms=round((time.monotonic() - started) * 1000, 1),
        )
        return response


def _unauthorized(request: HttpRequest, detail: str) -> JsonResponse:
    response = JsonResponse(
        {
            "error": "unauthenticated",
            "detail": detail,
            "request_id": getattr(request, "request_id", ""),
        },
        status=401,
    )
    response["WWW-Authenticate"] = 'Bearer realm="api", error="invalid_token"'
    return response


class PrincipalMiddleware:
    """Authenticate a bearer token if one is sent (a bad one is refused outright), else use
    the session; then build the request's immutable Principal once."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        request_id: str = request.request_id  # type: ignore[attr-defined]
        header = request.headers.get("Authorization")
        principal = None
        if header is not None:
            scheme, _, raw = header.partition(" ")
            if scheme.lower() != "bearer" or not raw.strip():
                return _unauthorized(request, "Use 'Authorization: Bearer <token>'.")
            token = token_authenticate(raw.strip())
            if token is None:
                return _unauthorized(request, "The token is invalid, expired or revoked.")
            request.user = token.user
            request.token_authenticated = True  # type: ignore[attr-defined]
            principal = principal_for(
                token.user,
                request_id=request_id,
                scopes=frozenset(token.scopes),
                token_id=str(token.pk),
            )
            structlog.contextvars.bind_contextvars(token_id=str(token.pk))
            token_use_record(token=token, request_id=request_id, path=request.path)
        elif request.user.is_authenticated:
            principal = principal_for(request.user, request_id=request_id)  # type: ignore[arg-type]
        request.principal = principal  # type: ignore[attr-defined]
        if principal is not None:
            structlog.contextvars.bind_contextvars(user=user_log_hash(principal.user_id))
        return self.get_response(request)


class AdminDataScopeMiddleware:
    """Staff in Django admin manage every document: their requests run in one transaction
    inside the explicit privileged row-level-security scope. Nobody else's do."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if request.path.startswith(ADMIN_PREFIX) and user is not None and user.is_staff:
            with privileged_scope("staff in Django admin"):
                return self.get_response(request)
        return self.get_response(request)


def mfa_passed(request: HttpRequest) -> bool:
    """Did this session's sign-in (or a later re-authentication) include an MFA step?"""
    from allauth.account.authentication import get_authentication_records

    records = get_authentication_records(request, request.user)  # type: ignore[arg-type]
    return any(record.get("method") == "mfa" for record in records)


class StaffMfaMiddleware:
    """Django admin accepts only sessions that passed MFA (ADMIN_MFA_REQUIRED).

    Admin's own password-only login form is replaced by allauth's (which runs the MFA step
    and the login rate limits). A staff session without MFA is sent to enrol (no
    authenticator yet) or to re-authenticate with its second factor; nothing under /admin/
    is served to it meanwhile."""

    def __init__(self, get_response: Handler) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if not request.path.startswith(ADMIN_PREFIX):
            return self.get_response(request)
        if request.path.startswith(ADMIN_PREFIX + "login/"):
            target = request.GET.get("next", "")
            target = target if target.startswith(ADMIN_PREFIX) else ADMIN_PREFIX
            return HttpResponseRedirect(f"{settings.LOGIN_URL}?{urlencode({'next': target})}")
        user = request.user
        if settings.ADMIN_MFA_REQUIRED and user.is_authenticated and not mfa_passed(request):
            from allauth.mfa.utils import is_mfa_enabled

            log.warning("admin_refused_without_mfa", path=request.path)
            if not is_mfa_enabled(user):  # type: ignore[arg-type]
                return HttpResponseRedirect(reverse("mfa_activate_totp"))
            query = urlencode({"next": request.get_full_path()})
            return HttpResponseRedirect(f"{reverse('mfa_reauthenticate')}?{query}")
        return self.get_response(request)
