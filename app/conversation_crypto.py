"""Envelope encryption of conversation text at rest (titles and messages).

One AES-256 data key per conversation, wrapped by the KEK (app/keyring.py) and stored on
the conversation row; every text field is AES-256-GCM under that key with associated data
naming its row and field (`app.message:<id>:content`), so a ciphertext copied onto another
row, or another field, fails to decrypt. The wrapped key itself is bound to its
conversation (the wrapping context / Transit derivation context).

Why one key per conversation, not per message: a conversation is read as a whole, so a
page with 50 messages needs one unwrap (one Vault round trip), and a list of 50
conversations needs one batch call; rotation re-wraps one key per conversation. Per-message
keys would add a wrapped key to every row and a Transit batch item to every read for no
gain in isolation: a conversation's messages are always disclosed together.

Why explicit functions and not a decrypting model field: the associated data needs the
row id, the unwrap costs a Vault call and can fail; hidden in attribute access, a template
loop would make one Vault call per row, and a failure would surface as a rendering error.
Writes go through `conversation_create` / `messages_add`, reads through the selectors,
which batch the unwraps.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.db import connection, transaction

from app.keyring import KEY_BYTES, NONCE_BYTES, KeyUnavailable, WrappedKey, keyring
from app.models import Conversation, Message
from audit.models import EventType
from audit.services import audit_record


class ConversationUndecryptable(KeyUnavailable):
    """Stored conversation text does not decrypt under its data key (moved or tampered)."""


def key_context(conversation_id: int) -> bytes:
    return f"app.conversation:{conversation_id}:data-key".encode()


def title_aad(conversation_id: int) -> bytes:
    return f"app.conversation:{conversation_id}:title".encode()


def content_aad(message_id: int) -> bytes:
    return f"app.message:{message_id}:content".encode()


def seal(data_key: bytes, plaintext: str, aad: bytes) -> bytes:
    nonce = os.urandom(NONCE_BYTES)
    return nonce + AESGCM(data_key).encrypt(nonce, plaintext.encode(), aad)


def unseal(data_key: bytes, blob: bytes, aad: bytes) -> str:
    try:
        return (
            AESGCM(data_key)
            .decrypt(bytes(blob[:NONCE_BYTES]), bytes(blob[NONCE_BYTES:]), aad)
            .decode()
        )
    except (InvalidTag, ValueError):
        raise ConversationUndecryptable(
            f"stored text for {aad.decode()} does not decrypt under its conversation's key"
        ) from None


def _wrapped(conversation: Any) -> WrappedKey:
    return WrappedKey(kek_id=conversation.kek_id, blob=bytes(conversation.data_key))


def data_keys(conversations: Iterable[Any]) -> dict[int, bytes]:
    """Unwrap the data keys of these conversations in one keyring call (one Vault round
    trip for any number of conversations)."""
    rows = list({c.pk: c for c in conversations}.values())
    if not rows:
        return {}
    keys = keyring().unwrap_many([(_wrapped(c), key_context(c.pk)) for c in rows])
    return {c.pk: key for c, key in zip(rows, keys, strict=True)}


def data_key(conversation: Any) -> bytes:
    return data_keys([conversation])[conversation.pk]


def _next_ids(model: type[Any], count: int) -> list[int]:
    """Reserve primary keys first: the associated data names the row's own id."""
    table = model._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT nextval(pg_get_serial_sequence(%s, 'id')) FROM generate_series(1, %s)",
            [table, count],
        )
        return [int(row[0]) for row in cursor.fetchall()]


def conversation_create(*, owner_id: int, title: str) -> tuple[Conversation, bytes]:
    """A new conversation with a fresh data key; returns it with the (unwrapped) key."""
    (conversation_id,) = _next_ids(Conversation, 1)
    key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
    wrapped = keyring().wrap(key, context=key_context(conversation_id))
    conversation = Conversation.objects.create(
        id=conversation_id,
        owner_id=owner_id,
        title_ct=seal(key, title, title_aad(conversation_id)),
        data_key=wrapped.blob,
        kek_id=wrapped.kek_id,
    )
    return conversation, key


@dataclass(frozen=True, slots=True)
class NewMessage:
    role: str
    content: str
    provider: str = ""
    request_id: str = ""


def messages_add(
    *, conversation: Conversation, key: bytes, messages: Sequence[NewMessage]
) -> list[Message]:
    """Store messages encrypted under the conversation's data key."""
    ids = _next_ids(Message, len(messages))
    return Message.objects.bulk_create(
        Message(
            id=message_id,
            conversation=conversation,
            role=m.role,
            content_ct=seal(key, m.content, content_aad(message_id)),
            provider=m.provider,
            request_id=m.request_id,
        )
        for message_id, m in zip(ids, messages, strict=True)
    )


def conversation_title(conversation: Any, key: bytes) -> str:
    return unseal(key, bytes(conversation.title_ct), title_aad(conversation.pk))


def message_content(message: Any, key: bytes) -> str:
    return unseal(key, bytes(message.content_ct), content_aad(message.pk))


def conversation_titles(conversations: Sequence[Any]) -> dict[int, str]:
    keys = data_keys(conversations)
    return {c.pk: conversation_title(c, keys[c.pk]) for c in conversations}


# --- rotation -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RotationReport:
    kek_id: str
    rewrapped: int
    already_current: int
    batches: int


def conversation_keys_rotate(*, batch: int = 500, request_id: str = "") -> RotationReport:
    """Re-wrap every conversation's data key under the current KEK version. Content is not
    re-encrypted (the data keys do not change). Batched: each batch locks its rows (others
    are skipped and picked up by a later run), re-wraps them in one keyring call and
    commits with its `keys.rotated` audit event. Idempotent: keys already under the
    current KEK are left alone."""
    ring = keyring()
    current = ring.current_id()
    rewrapped = batches = 0
    while True:
        with transaction.atomic():
            rows = list(
                Conversation.objects.exclude(kek_id=current)
                .order_by("id")
                .select_for_update(skip_locked=True)
                .only("id", "data_key", "kek_id")[:batch]
            )
            if not rows:
                break
            before = sorted({r.kek_id for r in rows})
            new = ring.rewrap_many([(_wrapped(r), key_context(r.pk)) for r in rows])
            for row, wrapped in zip(rows, new, strict=True):
                row.data_key, row.kek_id = wrapped.blob, wrapped.kek_id
            Conversation.objects.bulk_update(rows, ["data_key", "kek_id"])
            audit_record(
                event_type=EventType.KEYS_ROTATED,
                actor_id=None,
                request_id=request_id,
                subject="conversation-data-keys",
                decision="rewrapped",
                reason="kek_rotation",
                metadata={
                    "to": current,
                    "from": before,
                    "rewrapped": len(rows),
                    "first_id": rows[0].pk,
                    "last_id": rows[-1].pk,
                },
            )
        rewrapped += len(rows)
        batches += 1
        if any(r.kek_id != current for r in rows):
            # The KEK moved on during the run (or the backend reports another id): stop
            # instead of looping; a second run finishes.
            break
    already = Conversation.objects.filter(kek_id=current).count() - rewrapped
    return RotationReport(
        kek_id=current, rewrapped=rewrapped, already_current=max(already, 0), batches=batches
    )


# --- legacy plaintext rows (data migration app/0004) ---------------------------------------


def legacy_rows_encrypt(conversation_model: Any, message_model: Any, batch: int = 500) -> int:
    """Encrypt rows written before encryption at rest: a data key per conversation, its
    title and messages sealed, the plaintext columns emptied. Takes the (historical)
    models, so the migration can run it. Returns the number of conversations done."""
    done = 0
    while True:
        rows = list(conversation_model.objects.filter(data_key__isnull=True).order_by("id")[:batch])
        if not rows:
            return done
        ring = keyring()
        for conversation in rows:
            key = AESGCM.generate_key(bit_length=KEY_BYTES * 8)
            wrapped = ring.wrap(key, context=key_context(conversation.pk))
            conversation.title_ct = seal(key, conversation.title, title_aad(conversation.pk))
            conversation.title = ""
            conversation.data_key, conversation.kek_id = wrapped.blob, wrapped.kek_id
            conversation.save(update_fields=["title_ct", "title", "data_key", "kek_id"])
            messages = list(message_model.objects.filter(conversation_id=conversation.pk))
            for message in messages:
                message.content_ct = seal(key, message.content, content_aad(message.pk))
                message.content = ""
            message_model.objects.bulk_update(messages, ["content_ct", "content"])
        done += len(rows)
