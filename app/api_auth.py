"""DRF authentication and permissions over the Principal built by PrincipalMiddleware."""

from __future__ import annotations

from typing import Any

from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import NotAuthenticated
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from app.identity import Principal


class PrincipalAuthentication(SessionAuthentication):
    """Use the middleware's Principal. Session-authenticated calls must pass CSRF; bearer
    token calls carry no cookies and need none."""

    def authenticate(self, request: Request) -> tuple[Any, Principal] | None:
        principal: Principal | None = getattr(request._request, "principal", None)
        if principal is None:
            return None
        if not getattr(request._request, "token_authenticated", False):
            self.enforce_csrf(request)
        return request._request.user, principal

    def authenticate_header(self, request: Request) -> str:
        return 'Bearer realm="api"'


def principal_of(request: Request) -> Principal:
    principal = request.auth
    if not isinstance(principal, Principal):
        raise NotAuthenticated
    return principal


class HasScope(BasePermission):
    """The credential's scopes must include the view's `required_scope`."""

    message = "This credential lacks the scope this endpoint needs."

    def has_permission(self, request: Request, view: Any) -> bool:
        principal = request.auth
        scope = getattr(view, "required_scope", None)
        return isinstance(principal, Principal) and scope is not None and principal.has_scope(scope)
