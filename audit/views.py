"""GET /metrics: Prometheus text, for loopback clients or staff (session or token)."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.http import require_GET

from audit.metrics import exposition, is_loopback_client


def _is_staff(request: HttpRequest) -> bool:
    principal = getattr(request, "principal", None)
    if principal is not None:
        return bool(principal.is_staff)
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and user.is_staff)


@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    if not (is_loopback_client(request) or _is_staff(request)):
        return JsonResponse(
            {
                "error": "forbidden",
                "detail": "Metrics are served to this machine or to staff only.",
                "request_id": getattr(request, "request_id", ""),
            },
            status=403,
        )
    body, content_type = exposition()
    response = HttpResponse(body, content_type=content_type)
    response["Cache-Control"] = "no-store"
    return response
