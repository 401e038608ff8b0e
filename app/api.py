"""The JSON API (v1). Views validate at the edge, call one service or selector, and shape
the reply."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.http import Http404, StreamingHttpResponse
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import PermissionDenied, ValidationError
from rest_framework.parsers import MultiPartParser
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from app.api_auth import HasScope, principal_of
from app.errors import PayloadTooLarge
from app.identity import Principal, Tier
from app.logs import get_logger
from app.models import Conversation, User
from app.selectors import (
    api_token_of,
    conversation_get,
    conversation_list,
    conversation_read,
)
from app.serializers import (
    ChatInput,
    ChatOut,
    ConversationDetailOut,
    ConversationListOut,
    DocumentContentInput,
    DocumentListOut,
    DocumentUploadInput,
    DocumentVersionOut,
    ErrorOut,
    IngestionJobOut,
    SearchInput,
    SearchOut,
    TokenIssueInput,
    TokenOut,
)
from app.services import (
    TokenError,
    chat_refusal_record,
    chat_turn_record,
    data_access_record,
    document_reupload,
    document_upload,
    token_issue_for_session,
    token_revoke,
)
from audit.models import EventType
from broker.types import ProviderUnavailable, QuotaExceeded, TokenDelta
from orchestration.errors import Blocked
from orchestration.pipeline import Answer, Turn, answer_stream, prepare_turn
from orchestration.tool_loop import ToolActivity
from retrieval.selectors import (
    document_get_visible,
    documents_list,
    hybrid_search,
    ingestion_job_get,
)

log = get_logger("app.api")
_ERRORS = {400: ErrorOut, 401: ErrorOut, 403: ErrorOut, 404: ErrorOut}


def _citations_json(answer: Answer) -> list[dict[str, Any]]:
    return [
        {"document": c.document_id, "title": c.title, "chunk": c.chunk_id, "marker": c.marker}
        for c in answer.citations
    ]


def _final_json(
    principal: Principal, conversation: Conversation, message_id: int, answer: Answer
) -> dict[str, Any]:
    return {
        "conversation": conversation.pk,
        "message_id": message_id,
        "answer": answer.text,
        "citations": _citations_json(answer),
        "blocked": False,
        "reason": None,
        "provider": answer.provider,
        "labels": list(answer.labels),
        "tools": [t.as_json() for t in answer.tools],
        "request_id": principal.request_id,
    }


def _blocked_json(principal: Principal, conversation: Conversation | None, exc: Blocked) -> dict:
    return {
        "conversation": conversation.pk if conversation else None,
        "message_id": None,
        "answer": exc.user_message,
        "citations": [],
        "blocked": True,
        "reason": exc.reason_code,
        "provider": None,
        "request_id": principal.request_id,
    }


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


_DONE = object()


def _next_or_done(iterator: Iterator[Any]) -> Any:
    return next(iterator, _DONE)


class ChatView(APIView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scope = "chat"

    def perform_content_negotiation(self, request: Request, force: bool = False) -> Any:
        # The SSE reply is a hand-built StreamingHttpResponse; JSON replies and errors stay
        # JSON even when the client accepts only text/event-stream.
        return super().perform_content_negotiation(request, force=True)

    @extend_schema(request=ChatInput, responses={200: ChatOut, 503: ErrorOut, **_ERRORS})
    def post(self, request: Request) -> Response | StreamingHttpResponse:
        principal = principal_of(request)
        data = ChatInput(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = None
        if data.validated_data.get("conversation") is not None:
            conversation = conversation_get(principal, data.validated_data["conversation"])
            if conversation is None:
                raise Http404
        message: str = data.validated_data["message"]
        try:
            turn = prepare_turn(principal, message)
        except Blocked as exc:
            chat_refusal_record(
                principal=principal, reason=exc.reason_code, message=message, blocked=exc
            )
            if "text/event-stream" in request.headers.get("Accept", ""):
                return _event_stream(
                    _one_event("blocked", _blocked_json(principal, conversation, exc))
                )
            return Response(_blocked_json(principal, conversation, exc))
        except ProviderUnavailable:
            chat_refusal_record(principal=principal, reason="no_allowed_provider", message=message)
            raise
        if "text/event-stream" in request.headers.get("Accept", ""):
            try:
                # Opened before the response starts: limits answer 429, no provider 503.
                events = answer_stream(turn)
            except ProviderUnavailable:
                chat_refusal_record(
                    principal=principal, reason="no_allowed_provider", message=message
                )
                raise
            return _event_stream(_stream_turn(principal, conversation, turn, events))
        answer = None
        try:
            for event in answer_stream(turn):
                if isinstance(event, Answer):
                    answer = event
        except Blocked as exc:  # an output guard withheld the answer
            chat_refusal_record(
                principal=principal, reason=exc.reason_code, message=message, blocked=exc
            )
            return Response(_blocked_json(principal, conversation, exc))
        except ProviderUnavailable:
            chat_refusal_record(principal=principal, reason="no_allowed_provider", message=message)
            raise
        if answer is None:
            raise RuntimeError("the answer stream ended without a final answer")
        conversation, reply = chat_turn_record(
            principal=principal, conversation=conversation, turn=turn, answer=answer
        )
        return Response(_final_json(principal, conversation, reply.pk, answer))


def _event_stream(events: AsyncIterator[bytes]) -> StreamingHttpResponse:
    response = StreamingHttpResponse(events, content_type="text/event-stream")
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # nginx: pass each event through at once
    return response


async def _one_event(event: str, data: Any) -> AsyncIterator[bytes]:
    yield _sse(event, data)


async def _stream_turn(
    principal: Principal,
    conversation: Conversation | None,
    turn: Turn,
    events: Iterator[TokenDelta | ToolActivity | Answer],
) -> AsyncIterator[bytes]:
    """Relay the answer as SSE. The sync pipeline runs in the request's thread (DB access
    stays on one connection); only the relaying happens on the event loop."""
    try:
        while True:
            event = await sync_to_async(_next_or_done)(events)
            if event is _DONE:
                return
            if isinstance(event, TokenDelta):
                yield _sse("token", {"text": event.text})
            elif isinstance(event, ToolActivity):
                yield _sse("tool", event.as_json())
            elif isinstance(event, Answer):
                yield _sse("citations", _citations_json(event))
                saved, reply = await sync_to_async(chat_turn_record)(
                    principal=principal, conversation=conversation, turn=turn, answer=event
                )
                yield _sse("done", _final_json(principal, saved, reply.pk, event))
    except Blocked as exc:  # an output guard withheld the rest of the answer
        await sync_to_async(chat_refusal_record)(
            principal=principal, reason=exc.reason_code, message=turn.message, blocked=exc
        )
        yield _sse("blocked", _blocked_json(principal, conversation, exc))
    except ProviderUnavailable as exc:
        await sync_to_async(chat_refusal_record)(
            principal=principal, reason="no_allowed_provider", message=turn.message
        )
        yield _sse(
            "error",
            {
                "error": "no_allowed_provider",
                "detail": str(exc),
                "request_id": principal.request_id,
            },
        )
    except QuotaExceeded as exc:
        yield _sse(
            "error",
            {
                "error": exc.code,
                "detail": str(exc),
                "retry_after": exc.retry_after_s,
                "request_id": principal.request_id,
            },
        )
    except Exception:
        # Headers are sent already: the only way to report is an event. No internals.
        log.exception("chat_stream_failed")
        yield _sse(
            "error",
            {
                "error": "internal_error",
                "detail": "The answer was interrupted. Please try again.",
                "request_id": principal.request_id,
            },
        )


class ConversationListView(APIView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scope = "chat"

    @extend_schema(
        operation_id="conversations_list", responses={200: ConversationListOut, **_ERRORS}
    )
    def get(self, request: Request) -> Response:
        conversations = conversation_list(principal_of(request), limit=200)
        return Response(ConversationListOut({"conversations": conversations}).data)


class ConversationDetailView(APIView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scope = "chat"

    @extend_schema(
        operation_id="conversations_detail", responses={200: ConversationDetailOut, **_ERRORS}
    )
    def get(self, request: Request, conversation_id: int) -> Response:
        principal = principal_of(request)
        conversation = conversation_get(principal, conversation_id)
        if conversation is None:
            raise Http404
        detail = conversation_read(principal, conversation)
        return Response(
            ConversationDetailOut(
                {"id": detail.id, "title": detail.title, "messages": detail.messages}
            ).data
        )


class SearchView(APIView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scope = "search"

    @extend_schema(parameters=[SearchInput], responses={200: SearchOut, **_ERRORS})
    def get(self, request: Request) -> Response:
        principal = principal_of(request)
        data = SearchInput(data=request.query_params)
        data.is_valid(raise_exception=True)
        k = data.validated_data.get("k", settings.RETRIEVAL_TOP_K)
        hits = hybrid_search(principal, data.validated_data["q"], k=k)
        data_access_record(
            principal=principal,
            event_type=EventType.RETRIEVAL_ACCESS,
            shown=[(h.document_id, h.document_version, h.chunk_id) for h in hits],
        )
        return Response(SearchOut({"results": hits}).data)


def _csv(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _validated_upload(
    serializer_class: type[serializers.Serializer], request: Request
) -> tuple[dict[str, Any], UploadedFile]:
    """The multipart form's fields and its file, or 400 / 413 (size limit)."""
    data = serializer_class(data=request.data)
    data.is_valid(raise_exception=True)
    upload = data.validated_data["file"]
    if upload.size > settings.INGEST_MAX_BYTES:
        raise PayloadTooLarge(settings.INGEST_MAX_BYTES)
    return data.validated_data, upload


class DocumentListView(APIView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scope = "documents"
    parser_classes = [MultiPartParser]

    @extend_schema(responses={200: DocumentListOut, **_ERRORS})
    def get(self, request: Request) -> Response:
        documents = documents_list(principal_of(request))
        return Response(DocumentListOut({"documents": documents}).data)

    @extend_schema(
        request={"multipart/form-data": DocumentUploadInput},
        responses={202: IngestionJobOut, 413: ErrorOut, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        """Upload a document for indexing (needs the `retrieval.add_document` permission;
        nobody may classify a document above their own clearance)."""
        principal = principal_of(request)
        if not request.user.has_perm("retrieval.add_document"):
            raise PermissionDenied("You may not add documents.")
        fields, upload = _validated_upload(DocumentUploadInput, request)
        tier = Tier.parse(fields["classification"])
        if not principal.may_read(tier):
            raise PermissionDenied("You may not classify a document above your clearance.")
        job = document_upload(
            principal=principal,
            title=fields.get("title") or "",
            classification=tier,
            source_name=upload.name or "upload",
            data=upload.read(),
            allow_users=_csv(fields["allow_users"]),
            allow_groups=_csv(fields["allow_groups"]),
            all_authenticated=fields["all_authenticated"],
        )
        return Response(IngestionJobOut(job).data, status=202)


class DocumentContentView(APIView):
    """`POST /api/v1/documents/{id}/content`: a new version of a document's file."""

    permission_classes = [IsAuthenticated, HasScope]
    required_scope = "documents"
    parser_classes = [MultiPartParser]

    @extend_schema(
        request={"multipart/form-data": DocumentContentInput},
        responses={
            200: DocumentVersionOut,
            202: IngestionJobOut,
            413: ErrorOut,
            **_ERRORS,
        },
    )
    def post(self, request: Request, document_id: int) -> Response:
        """Replace the file (needs `retrieval.change_document`; 404 for a document the
        caller may not read). 202 with the re-indexing job; 200 when the bytes are the
        ones already indexed. The old chunks serve until the new ones replace them."""
        principal = principal_of(request)
        if document_get_visible(principal, document_id) is None:
            raise Http404
        if not request.user.has_perm("retrieval.change_document"):
            raise PermissionDenied("You may not change documents.")
        _, upload = _validated_upload(DocumentContentInput, request)
        document, job = document_reupload(
            principal=principal,
            document_id=document_id,
            source_name=upload.name or "upload",
            data=upload.read(),
        )
        if job is None:
            unchanged = {"pk": document.pk, "version": document.version, "changed": False}
            return Response(DocumentVersionOut(unchanged).data)
        return Response(IngestionJobOut(job).data, status=202)


class IngestionJobView(APIView):
    permission_classes = [IsAuthenticated, HasScope]
    required_scope = "documents"

    @extend_schema(responses={200: IngestionJobOut, **_ERRORS})
    def get(self, request: Request, job_id: int) -> Response:
        job = ingestion_job_get(principal_of(request), job_id)
        if job is None:
            raise Http404
        return Response(IngestionJobOut(job).data)


class TokenIssueView(APIView):
    """`POST /api/v1/auth/token`: a short-lived, scoped bearer token for the signed-in user.
    Only a session may call it (with its CSRF token); a bearer token gets 403."""

    permission_classes = [IsAuthenticated]

    @extend_schema(
        operation_id="auth_token_issue",
        request=TokenIssueInput,
        responses={201: TokenOut, **_ERRORS},
    )
    def post(self, request: Request) -> Response:
        principal = principal_of(request)
        if principal.token_id is not None:
            raise PermissionDenied("Tokens are issued to a signed-in session, not to a token.")
        data = TokenIssueInput(data=request.data)
        data.is_valid(raise_exception=True)
        scopes = frozenset(data.validated_data.get("scopes") or principal.scopes)
        user: User = request.user  # type: ignore[assignment]
        try:
            raw, token = token_issue_for_session(
                principal=principal, user=user, scopes=scopes, ttl_s=data.validated_data.get("ttl")
            )
        except TokenError as exc:
            raise ValidationError({"token": [str(exc)]}) from None
        out = {"id": token.pk, "token": raw, "scopes": token.scopes, "expires_at": token.expires_at}
        response = Response(TokenOut(out).data, status=201)
        response["Cache-Control"] = "no-store"
        return response


class TokenRevokeView(APIView):
    """`DELETE /api/v1/auth/token/{id}`: revoke one of the caller's own tokens (a session or
    any of the user's tokens may do it); 404 for anyone else's."""

    permission_classes = [IsAuthenticated]

    @extend_schema(operation_id="auth_token_revoke", responses={204: None, **_ERRORS})
    def delete(self, request: Request, token_id: Any) -> Response:
        principal = principal_of(request)
        token = api_token_of(principal, str(token_id))
        if token is None:
            raise Http404
        token_revoke(token=token, actor_id=principal.user_id, request_id=principal.request_id)
        return Response(status=204)
