"""Reads owned by `app`: principals, conversations and their messages."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import QuerySet
from django.utils import timezone

from app.conversation_crypto import conversation_title, data_key, data_keys, message_content
from app.identity import ALL_SCOPES, Principal, Tier
from app.models import ApiToken, BreakGlassGrant, Conversation, Message, User
from retrieval.selectors import visible_document_ids


def principal_for(
    user: User,
    *,
    request_id: str,
    scopes: frozenset[str] = ALL_SCOPES,
    token_id: str | None = None,
) -> Principal:
    """Build the request's Principal from the user's current groups and clearance."""
    groups = sorted(user.groups.values_list("pk", "name"), key=lambda g: g[1])
    return Principal(
        user_id=user.pk,
        username=user.get_username(),
        groups=tuple(name for _, name in groups),
        group_ids=tuple(pk for pk, _ in groups),
        clearance=Tier(user.clearance),
        scopes=frozenset(scopes),
        request_id=request_id,
        token_id=token_id,
        is_staff=user.is_staff,
    )


def api_token_of(principal: Principal, token_id: str) -> ApiToken | None:
    """One of the caller's own API tokens, or None (never another user's)."""
    return ApiToken.objects.filter(user_id=principal.user_id, pk=token_id).first()


def conversations_of(principal: Principal) -> QuerySet[Conversation]:
    return Conversation.objects.filter(owner_id=principal.user_id).order_by("-updated_at", "-id")


def conversation_get(principal: Principal, conversation_id: int) -> Conversation | None:
    """The caller's own conversation, or None (never another user's)."""
    return conversations_of(principal).filter(pk=conversation_id).first()


@dataclass(frozen=True, slots=True)
class ConversationView:
    """A conversation with its title decrypted."""

    pk: int
    title: str
    created_at: datetime
    updated_at: datetime

    @property
    def id(self) -> int:
        return self.pk


def conversation_views(conversations: QuerySet[Conversation] | list[Any]) -> list[ConversationView]:
    """Decrypt the titles of these conversations with one keyring call for all of them."""
    rows = list(conversations)
    keys = data_keys(rows)
    return [
        ConversationView(
            pk=c.pk,
            title=conversation_title(c, keys[c.pk]),
            created_at=c.created_at,
            updated_at=c.updated_at,
        )
        for c in rows
    ]


def conversation_list(principal: Principal, *, limit: int) -> list[ConversationView]:
    """The caller's latest conversations, titles decrypted (one keyring call)."""
    return conversation_views(conversations_of(principal)[:limit])


@dataclass(frozen=True, slots=True)
class CitationView:
    marker: int
    document_id: int
    chunk_id: int
    title: str
    available: bool


@dataclass(frozen=True, slots=True)
class CitedDocument:
    """Citations grouped by document for display: one link, its markers."""

    document_id: int
    title: str
    available: bool
    markers: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class MessageView:
    id: int
    role: str
    content: str
    provider: str
    blocked: bool
    reason: str
    created_at: str
    citations: tuple[CitationView, ...]

    @property
    def cited_documents(self) -> list[CitedDocument]:
        grouped: dict[int, list[CitationView]] = {}
        for c in self.citations:
            grouped.setdefault(c.document_id, []).append(c)
        return [
            CitedDocument(
                document_id=doc_id,
                title=cites[0].title,
                available=cites[0].available,
                markers=tuple(c.marker for c in cites),
            )
            for doc_id, cites in grouped.items()
        ]


@dataclass(frozen=True, slots=True)
class ConversationDetail:
    id: int
    title: str
    messages: list[MessageView]

    @property
    def pk(self) -> int:
        return self.id


def conversation_read(principal: Principal, conversation: Conversation) -> ConversationDetail:
    """The conversation decrypted: its data key is unwrapped once for the title and every
    message (one keyring call, whatever the number of messages)."""
    key = data_key(conversation)
    return ConversationDetail(
        id=conversation.pk,
        title=conversation_title(conversation, key),
        messages=conversation_messages(principal, conversation, key=key),
    )


def conversation_messages(
    principal: Principal, conversation: Conversation, *, key: bytes | None = None
) -> list[MessageView]:
    """Messages decrypted, with citations re-checked against the ACL now: a document the
    caller may no longer read shows as unavailable, without its title."""
    if key is None:
        key = data_key(conversation)
    messages = list(Message.objects.filter(conversation=conversation).prefetch_related("citations"))
    cited = {c.document_id for m in messages for c in m.citations.all()}
    readable = visible_document_ids(principal, cited)
    return [
        MessageView(
            id=m.pk,
            role=m.role,
            content=message_content(m, key),
            provider=m.provider,
            blocked=m.blocked,
            reason=m.reason,
            created_at=m.created_at.isoformat(),
            citations=tuple(
                CitationView(
                    marker=c.marker,
                    document_id=c.document_id,
                    chunk_id=c.chunk_id,
                    title=c.title if c.document_id in readable else "",
                    available=c.document_id in readable,
                )
                for c in m.citations.all()
            ),
        )
        for m in messages
    ]


def break_glass_subjects(staff_id: int) -> QuerySet[User]:
    """Users whose conversations this staff member may read right now."""
    live = BreakGlassGrant.objects.filter(staff_id=staff_id, expires_at__gt=timezone.now())
    return User.objects.filter(pk__in=live.values("subject_id"))
