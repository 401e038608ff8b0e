"""Writes owned by `app`: API tokens and recording chat turns. Each runs in one
transaction together with its audit event."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from redis.exceptions import RedisError

from app.conversation_crypto import NewMessage, conversation_create, data_key, messages_add
from app.identity import ALL_SCOPES, Principal, Tier
from app.models import ApiToken, BreakGlassGrant, Citation, Conversation, Message, User
from app.redis import redis_client
from audit.models import EventType
from audit.services import audit_record
from orchestration.anomaly import documents_velocity_record, failed_login_velocity_record
from orchestration.errors import Blocked
from orchestration.pipeline import Answer, Turn
from retrieval.models import Document, IngestionJob
from retrieval.services import document_create, document_replace_content, ingestion_submit

TOKEN_PREFIX = "sgr_"  # noqa: S105 - a public prefix that makes leaked tokens greppable


class TokenError(ValueError):
    """A token request is invalid (unknown scope, TTL out of range)."""


def _keyed_digest(purpose: bytes, value: str) -> str:
    key = hmac.new(settings.SECRET_KEY.encode(), purpose, hashlib.sha256).digest()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def token_hash(raw_token: str) -> str:
    return _keyed_digest(b"api-token", raw_token)


def token_issue(
    *,
    user: User,
    scopes: frozenset[str],
    ttl_s: int | None = None,
    actor_id: int | None = None,
    request_id: str = "",
) -> tuple[str, ApiToken]:
    """Create a token; return the raw secret (shown once) and its stored record."""
    ttl = settings.API_TOKEN_DEFAULT_TTL_S if ttl_s is None else ttl_s
    if not 0 < ttl <= settings.API_TOKEN_MAX_TTL_S:
        raise TokenError(f"ttl must be between 1 and {settings.API_TOKEN_MAX_TTL_S} seconds")
    unknown = set(scopes) - ALL_SCOPES
    if unknown or not scopes:
        raise TokenError(f"scopes must be a non-empty subset of {', '.join(sorted(ALL_SCOPES))}")
    if not user.is_active:
        raise TokenError("user is inactive")
    raw = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with transaction.atomic():
        token = ApiToken.objects.create(
            id=uuid.uuid4(),
            user=user,
            token_hash=token_hash(raw),
            scopes=sorted(scopes),
            expires_at=timezone.now() + timedelta(seconds=ttl),
        )
        audit_record(
            event_type=EventType.TOKEN_ISSUED,
            actor_id=actor_id,
            request_id=request_id,
            token_id=str(token.id),
            subject=f"user:{user.pk}",
            decision="issued",
            metadata={"scopes": sorted(scopes), "ttl_s": ttl},
        )
    return raw, token


def token_revoke(*, token: ApiToken, actor_id: int | None, request_id: str = "") -> None:
    with transaction.atomic():
        ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
            revoked_at=timezone.now()
        )
        audit_record(
            event_type=EventType.TOKEN_REVOKED,
            actor_id=actor_id,
            request_id=request_id,
            token_id=str(token.pk),
            subject=f"user:{token.user_id}",
            decision="revoked",
        )


def token_issue_for_session(
    *, principal: Principal, user: User, scopes: frozenset[str], ttl_s: int | None
) -> tuple[str, ApiToken]:
    """Issue a token to the signed-in user of a browser session (`POST /api/v1/auth/token`).

    A token never begets a token (a leaked one cannot extend itself), the scopes are a subset
    of the caller's own, and the lifetime is at most API_TOKEN_SESSION_MAX_TTL_S."""
    if principal.token_id is not None:
        raise TokenError("tokens are issued to a signed-in session, not to another token")
    if principal.user_id != user.pk:
        raise TokenError("a session may only issue tokens for its own user")
    excess = scopes - principal.scopes
    if excess:
        raise TokenError(f"scopes beyond your own: {', '.join(sorted(excess))}")
    ceiling = settings.API_TOKEN_SESSION_MAX_TTL_S
    ttl = min(settings.API_TOKEN_DEFAULT_TTL_S, ceiling) if ttl_s is None else ttl_s
    if not 0 < ttl <= ceiling:
        raise TokenError(f"ttl must be between 1 and {ceiling} seconds")
    return token_issue(
        user=user,
        scopes=scopes,
        ttl_s=ttl,
        actor_id=principal.user_id,
        request_id=principal.request_id,
    )


TOKEN_USE_AUDIT_WINDOW_S = 60


def token_use_record(*, token: ApiToken, request_id: str, path: str) -> bool:
    """Audit a token's use at most once per token per minute; return True when recorded.

    Every request already carries the token id in its log line; the audit trail needs to
    show *that* and *when* a token was used, not each call (one chained, locked audit row
    per API call would serialise all API traffic on the audit chain). A Redis `SET NX EX`
    elects the first use in each window. If Redis is unreachable every use is audited:
    the control fails towards more evidence, not less."""
    try:
        first = bool(
            redis_client().set(
                f"token-used:{token.pk}", request_id or "1", nx=True, ex=TOKEN_USE_AUDIT_WINDOW_S
            )
        )
    except RedisError:
        first = True
    if not first:
        return False
    audit_record(
        event_type=EventType.TOKEN_USED,
        actor_id=token.user_id,
        request_id=request_id,
        token_id=str(token.pk),
        subject=f"user:{token.user_id}",
        decision="used",
        metadata={"window_s": TOKEN_USE_AUDIT_WINDOW_S, "path": path[:200]},
    )
    return True


def token_authenticate(raw_token: str) -> ApiToken | None:
    """The live token for this secret: known, unexpired, unrevoked, active user."""
    if not raw_token.startswith(TOKEN_PREFIX) or len(raw_token) > 128:
        return None
    return (
        ApiToken.objects.select_related("user")
        .filter(
            token_hash=token_hash(raw_token),
            revoked_at__isnull=True,
            expires_at__gt=timezone.now(),
            user__is_active=True,
        )
        .first()
    )


def access_record(
    principal: Principal, shown: Iterable[tuple[int, int, int | None]]
) -> dict[str, Any]:
    """What data this principal was shown, and on what grounds: (document, version, chunk)
    triples (chunk None: the whole document), with the groups and clearance in force then.
    Enough to answer "who could have seen document D, and when?"
    (`manage.py audit_access --document D`)."""
    by_document: dict[tuple[int, int], list[int]] = {}
    for document_id, version, chunk_id in shown:
        chunks = by_document.setdefault((document_id, version), [])
        if chunk_id is not None:
            chunks.append(chunk_id)
    return {
        "context_documents": sorted({d for d, _ in by_document}),
        "context_chunks": [c for chunks in by_document.values() for c in chunks],
        "context": [
            {"document": d, "version": v, "chunks": chunks}
            for (d, v), chunks in sorted(by_document.items())
        ],
        "acl": {
            "decision": "permitted",
            "rule": "clearance>=tier and (user|group|all_authenticated)",
            "clearance": principal.clearance.label,
            "groups": list(principal.groups),
            "group_ids": list(principal.group_ids),
        },
    }


def data_access_record(
    *, principal: Principal, event_type: EventType, shown: Iterable[tuple[int, int, int | None]]
) -> None:
    """Audit a read of document data outside a chat turn (search results, a document page),
    and count the documents towards the user's short-window velocity."""
    shown = list(shown)
    try:
        documents_velocity_record(
            user_id=principal.user_id,
            request_id=principal.request_id,
            document_ids=sorted({document_id for document_id, _, _ in shown}),
        )
    except RedisError:
        pass  # detection only: an unreachable Redis must not stop an audited read
    audit_record(
        event_type=event_type,
        actor_id=principal.user_id,
        request_id=principal.request_id,
        token_id=principal.token_id,
        decision="permitted",
        metadata=access_record(principal, shown),
    )


def user_log_hash(user_id: int) -> str:
    """Logs name users by a keyed hash: lines of one user correlate, nobody is named."""
    return _keyed_digest(b"log-user", str(user_id))[:16]


def prompt_hmac(message: str) -> str:
    """A keyed digest of the prompt: lets an investigator match a known text, reveals none."""
    return _keyed_digest(b"prompt", message)


def chat_turn_record(
    *,
    principal: Principal,
    conversation: Conversation | None,
    turn: Turn,
    answer: Answer,
) -> tuple[Conversation, Message]:
    """Store the user's message and the answer with its citations, and audit the turn."""
    with transaction.atomic():
        if conversation is None:
            conversation, key = conversation_create(
                owner_id=principal.user_id, title=turn.message[:80]
            )
        else:
            key = data_key(conversation)
        _, reply = messages_add(
            conversation=conversation,
            key=key,
            messages=[
                NewMessage(
                    role=Message.Role.USER,
                    content=turn.message,
                    request_id=principal.request_id,
                ),
                NewMessage(
                    role=Message.Role.ASSISTANT,
                    content=answer.text,
                    provider=answer.provider,
                    request_id=principal.request_id,
                ),
            ],
        )
        Citation.objects.bulk_create(
            Citation(
                message=reply,
                document_id=c.document_id,
                chunk_id=c.chunk_id,
                title=c.title,
                marker=c.marker,
            )
            for c in answer.citations
        )
        conversation.save(update_fields=["updated_at"])
        audit_record(
            event_type=EventType.CHAT_TURN,
            actor_id=principal.user_id,
            request_id=principal.request_id,
            token_id=principal.token_id,
            subject=f"conversation:{conversation.pk}",
            decision="answered",
            metadata={
                "prompt_hmac": prompt_hmac(turn.message),
                "prompt_chars": len(turn.message),
                "sensitivity": turn.sensitivity.label,
                "template": turn.template,
                **access_record(
                    principal,
                    [
                        (c.document_id, c.document_version, c.chunk_id)
                        for c in (*turn.context, *answer.tool_context)
                    ],
                ),
                "tools": [t.as_json() for t in answer.tools],
                "cited_chunks": [c.chunk_id for c in answer.citations],
                "dropped_citations": list(answer.dropped_citations),
                "provider": answer.provider,
                "model": answer.model,
                "input_tokens": answer.input_tokens,
                "output_tokens": answer.output_tokens,
                "latency_ms": answer.latency_ms,
            },
        )
    return conversation, reply


def chat_refusal_record(
    *, principal: Principal, reason: str, message: str, blocked: Blocked | None = None
) -> None:
    """Audit a turn that a control stopped, as one event; no conversation rows are written.
    A `Blocked` from a guard brings its event type, subject and scores: the guard does not
    audit the block itself."""
    metadata: dict[str, Any] = {}
    event_type, subject = EventType.CHAT_BLOCKED, ""
    if blocked is not None:
        reason, event_type, subject = blocked.reason_code, blocked.event_type, blocked.subject
        metadata |= blocked.metadata
    audit_record(
        event_type=event_type,
        actor_id=principal.user_id,
        request_id=principal.request_id,
        token_id=principal.token_id,
        subject=subject,
        decision="blocked",
        reason=reason,
        metadata=metadata | {"prompt_hmac": prompt_hmac(message), "prompt_chars": len(message)},
    )


def document_upload(
    *,
    principal: Principal,
    title: str,
    classification: Tier,
    source_name: str,
    data: bytes,
    allow_users: list[str],
    allow_groups: list[str],
    all_authenticated: bool,
) -> IngestionJob:
    """Store an uploaded document and queue its indexing, in one transaction."""
    with transaction.atomic():
        document = document_create(
            title=title,
            classification=classification,
            source_name=source_name,
            data=data,
            allow_users=allow_users,
            allow_groups=allow_groups,
            all_authenticated=all_authenticated,
            actor_id=principal.user_id,
            request_id=principal.request_id,
        )
        return ingestion_submit(document_id=document.pk, actor_id=principal.user_id)


def document_reupload(
    *, principal: Principal, document_id: int, source_name: str, data: bytes
) -> tuple[Document, IngestionJob | None]:
    """Store a new version of a document and queue its re-indexing, in one transaction;
    no job when the bytes are the ones already indexed."""
    with transaction.atomic():
        document, changed = document_replace_content(
            document_id=document_id,
            source_name=source_name,
            data=data,
            actor_id=principal.user_id,
            request_id=principal.request_id,
        )
        if not changed:
            return document, None
        return document, ingestion_submit(document_id=document.pk, actor_id=principal.user_id)


BREAK_GLASS_MAX_MINUTES = 60
BREAK_GLASS_MIN_REASON = 15


class BreakGlassRefused(ValueError):
    """A break-glass request is incomplete (reason too short, duration out of range)."""


def break_glass_open(
    *, staff: User, subject: User, reason: str, minutes: int, request_id: str = ""
) -> BreakGlassGrant:
    """Grant `staff` read access to `subject`'s conversations for `minutes`, audited."""
    reason = reason.strip()
    if not staff.is_staff:
        raise BreakGlassRefused("only staff may break the glass")
    if len(reason) < BREAK_GLASS_MIN_REASON:
        raise BreakGlassRefused(f"give a reason of at least {BREAK_GLASS_MIN_REASON} characters")
    if not 1 <= minutes <= BREAK_GLASS_MAX_MINUTES:
        raise BreakGlassRefused(f"duration must be 1 to {BREAK_GLASS_MAX_MINUTES} minutes")
    with transaction.atomic():
        grant = BreakGlassGrant.objects.create(
            staff=staff,
            subject=subject,
            reason=reason,
            expires_at=timezone.now() + timedelta(minutes=minutes),
        )
        audit_record(
            event_type=EventType.BREAK_GLASS_OPENED,
            actor_id=staff.pk,
            request_id=request_id,
            subject=f"user:{subject.pk}",
            decision="granted",
            reason="break_glass",
            # The reason is the staff member's own words about an investigation, not user
            # data; its length and a keyed digest are kept, the text stays on the grant.
            metadata={"grant": grant.pk, "minutes": minutes, "reason_hmac": prompt_hmac(reason)},
        )
    return grant


def admin_view_record(*, staff_id: int, conversation: Conversation, request_id: str = "") -> None:
    """Audit one staff view of a user's conversation (made under a break-glass grant)."""
    audit_record(
        event_type=EventType.ADMIN_VIEWED_USER_DATA,
        actor_id=staff_id,
        request_id=request_id,
        subject=f"conversation:{conversation.pk}",
        decision="viewed",
        reason="break_glass",
        metadata={"owner": conversation.owner_id},
    )


def login_failure_signal(
    *, login: str = "", user_id: int | None = None, request_id: str = ""
) -> None:
    """A failed sign-in against an existing account counts towards its velocity signals
    (unknown login names are audited only: there is no account to score)."""
    if user_id is None and login:
        login = login.strip()
        user_id = (
            User.objects.filter(username__iexact=login).values_list("pk", flat=True).first()
            if "@" not in login
            else User.objects.filter(email__iexact=login).values_list("pk", flat=True).first()
        )
    if user_id is None or settings.VELOCITY_FAILED_LOGINS_PER_WINDOW <= 0:
        return
    try:
        failed_login_velocity_record(user_id=user_id, request_id=request_id)
    except RedisError:
        pass  # detection only: the login throttle itself lives in allauth's cache
