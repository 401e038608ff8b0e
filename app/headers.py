"""Permissions-Policy on every response, set by the app itself (the gateway adds the same
policy at the edge; without a gateway the app still sends it)."""

from __future__ import annotations

from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse


def permissions_policy_header(policy: dict[str, list[str]]) -> str:
    """`{"camera": [], "publickey-credentials-get": ["self"]}` ->
    `camera=(), publickey-credentials-get=(self)` (structured-header allow-lists)."""
    return ", ".join(f"{feature}=({' '.join(allow)})" for feature, allow in policy.items())


class PermissionsPolicyMiddleware:
    """Deny browser features the app never uses (camera, microphone, geolocation, payment,
    USB …) so that injected or third-party content cannot ask for them either."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self.value = permissions_policy_header(settings.PERMISSIONS_POLICY)

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if self.value:
            response.headers.setdefault("Permissions-Policy", self.value)
        return response
