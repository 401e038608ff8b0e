"""Server-rendered pages (chat, document view) and the health endpoints."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from app.identity import Principal
from app.redis import redis_client
from app.rendering import render_markdown, without_title_heading
from app.selectors import conversation_get, conversation_list, conversation_read
from app.services import data_access_record
from audit.models import EventType
from broker.services import usable_provider_count
from retrieval.selectors import database_role_is_rls_subject, document_get_visible


def _principal(request: HttpRequest) -> Principal:
    principal: Principal | None = getattr(request, "principal", None)
    if principal is None:  # login_required runs first; this is a wiring error
        raise Http404
    return principal


@login_required
@require_GET
def chat_page(request: HttpRequest, conversation_id: int | None = None) -> HttpResponse:
    principal = _principal(request)
    detail = None
    if conversation_id is not None:
        conversation = conversation_get(principal, conversation_id)
        if conversation is None:
            raise Http404
        detail = conversation_read(principal, conversation)
    return render(
        request,
        "chat/chat.html",
        {
            "principal": principal,
            "conversations": conversation_list(principal, limit=50),
            "conversation": detail,
            "messages_list": detail.messages if detail else [],
        },
    )


@login_required
@require_GET
def document_page(request: HttpRequest, document_id: int) -> HttpResponse:
    principal = _principal(request)
    document = document_get_visible(principal, document_id)
    if document is None:
        raise Http404
    data_access_record(
        principal=principal,
        event_type=EventType.DOCUMENT_VIEWED,
        shown=[(document.pk, document.version, None)],
    )
    return render(
        request,
        "chat/document.html",
        {
            "document": document,
            "principal": principal,
            "body": render_markdown(without_title_heading(document.text, document.title)),
        },
    )


@require_GET
@never_cache
def healthz(request: HttpRequest) -> JsonResponse:
    return JsonResponse({"status": "ok"})


def _check_database() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _check_rls_enforced() -> bool:
    """Fail closed: a database role that bypasses row-level security is not ready."""
    try:
        return database_role_is_rls_subject()
    except Exception:
        return False


def _check_redis() -> bool:
    try:
        return bool(redis_client().ping())
    except Exception:
        return False


@require_GET
@never_cache
def readyz(request: HttpRequest) -> JsonResponse:
    checks = {
        "database": _check_database(),
        "row_level_security": _check_rls_enforced(),
        "redis": _check_redis(),
        "provider": usable_provider_count() > 0,
    }
    ready = all(checks.values())
    return JsonResponse(
        {"status": "ready" if ready else "unavailable", "checks": checks},
        status=200 if ready else 503,
    )


def not_found(request: HttpRequest, exception: Exception | None = None) -> HttpResponse:
    """JSON for the API, a plain page elsewhere; never details."""
    from app.errors import json_not_found

    if request.path.startswith("/api/"):
        return json_not_found(request)
    return render(request, "404.html", status=404)


def server_error(request: HttpRequest) -> HttpResponse:
    from app.errors import json_server_error

    if request.path.startswith("/api/"):
        return json_server_error(request)
    return render(request, "500.html", status=500)
