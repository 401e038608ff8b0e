"""The one place where exceptions become the JSON error shape of CONTRACT.md."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404, HttpRequest, JsonResponse
from rest_framework import exceptions as drf
from rest_framework.response import Response

from app.keyring import KeyUnavailable
from app.logs import get_logger
from broker.types import ProviderUnavailable, QuotaExceeded
from orchestration.errors import InputRejected
from retrieval.errors import IngestionRejected

log = get_logger("app.errors")


class PayloadTooLarge(drf.APIException):
    status_code = 413
    default_code = "payload_too_large"

    def __init__(self, limit_bytes: int) -> None:
        super().__init__(f"The upload is larger than the {limit_bytes // (1024 * 1024)} MB limit.")


def error_body(request: HttpRequest | None, code: str, detail: str) -> dict[str, str]:
    return {"error": code, "detail": detail, "request_id": getattr(request, "request_id", "")}


def _validation_detail(detail: Any) -> str:
    if isinstance(detail, dict):
        return "; ".join(f"{k}: {_validation_detail(v)}" for k, v in detail.items())
    if isinstance(detail, list):
        return " ".join(_validation_detail(v) for v in detail)
    return str(detail)


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response:
    request = context.get("request")
    django_request = getattr(request, "_request", None)
    headers: dict[str, str] = {}
    if isinstance(exc, InputRejected):
        status, code, detail = 400, exc.code, exc.detail
    elif isinstance(exc, QuotaExceeded):
        status, code, detail = 429, exc.code, str(exc)
        headers["Retry-After"] = str(exc.retry_after_s)
    elif isinstance(exc, ProviderUnavailable):
        status, code, detail = 503, "no_allowed_provider", str(exc)
    elif isinstance(exc, KeyUnavailable):
        # Fail closed: the operator's log names the KEK and the reason; the caller learns
        # only that the conversation cannot be decrypted now.
        log.error("conversation_key_unavailable", reason=str(exc))
        status, code = 503, "key_unavailable"
        detail = "Conversation content cannot be decrypted right now."
    elif isinstance(exc, Http404 | drf.NotFound):
        status, code, detail = 404, "not_found", "Not found."
    elif isinstance(exc, drf.NotAuthenticated | drf.AuthenticationFailed):
        status, code, detail = 401, "unauthenticated", "Authentication required."
        headers["WWW-Authenticate"] = 'Bearer realm="api"'
    elif isinstance(exc, DjangoPermissionDenied | drf.PermissionDenied):
        status, code = 403, "forbidden"
        detail = str(exc.detail) if isinstance(exc, drf.APIException) else "Forbidden."
    elif isinstance(exc, drf.ParseError):
        status, code, detail = 400, "malformed_request", "The request body is not valid JSON."
    elif isinstance(exc, drf.ValidationError):
        status, code, detail = 400, "invalid_request", _validation_detail(exc.detail)
    elif isinstance(exc, IngestionRejected):
        status, code, detail = 400, "rejected_document", str(exc)
    elif isinstance(exc, drf.UnsupportedMediaType):
        status, code, detail = 415, "unsupported_media_type", str(exc.detail)
    elif isinstance(exc, drf.Throttled):
        status, code, detail = 429, "rate_limited", "Too many requests."
        headers["Retry-After"] = str(int(getattr(exc, "wait", None) or 1))
    elif isinstance(exc, drf.APIException):
        status, code, detail = exc.status_code, exc.default_code, str(exc.detail)
    else:
        log.exception("unhandled_api_error", error_type=type(exc).__name__)
        status, code, detail = 500, "internal_error", "Something went wrong on our side."
    return Response(error_body(django_request, code, detail), status=status, headers=headers)


def json_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body(request, "not_found", "Not found."), status=404)


def json_server_error(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        error_body(request, "internal_error", "Something went wrong on our side."), status=500
    )
