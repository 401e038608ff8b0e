"""Conversation text is encrypted at rest (envelope encryption): no plaintext in the
database, ciphertext bound to its row, fail-closed reads without the right KEK, and key
rotation by re-wrapping (local keyring here; Vault/OpenBao Transit in
test_conversation_crypto_vault.py)."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from app import keyring as keyring_module
from app.conversation_crypto import (
    ConversationUndecryptable,
    NewMessage,
    conversation_create,
    messages_add,
)
from app.keyring import KeyUnavailable, LocalKeyring, new_local_keyring_document
from app.models import Conversation, Message, User
from app.selectors import conversation_list, conversation_read
from audit.models import AuditEvent, EventType
from tests.db_roles import owner_role

SECRET_TITLE = "Quarterly layoffs plan for the Lisbon office"
SECRET_TEXT = "Our acquisition target is Northwind Traders at 41 per share"


def _keyring_env(monkeypatch, settings, current: str, keys: dict[str, str]) -> None:
    """Point the local backend at a keyring held in an environment variable."""
    monkeypatch.setenv("TEST_CONVERSATION_KEKS", json.dumps({"current": current, "keys": keys}))
    settings.CONVERSATION_KEK_BACKEND = "local"
    settings.CONVERSATION_KEK_LOCAL_REF = "env:TEST_CONVERSATION_KEKS"


def _key() -> str:
    return json.loads(new_local_keyring_document("x"))["keys"]["x"]


@pytest.fixture
def k1_k2() -> dict[str, str]:
    return {"k1": _key(), "k2": _key()}


def _conversation(owner: User, title: str = SECRET_TITLE, texts: tuple[str, ...] = (SECRET_TEXT,)):
    conversation, key = conversation_create(owner_id=owner.pk, title=title)
    messages = messages_add(
        conversation=conversation,
        key=key,
        messages=[NewMessage(role=Message.Role.USER, content=t) for t in texts],
    )
    return conversation, messages


@pytest.mark.django_db(transaction=True)
def test_database_holds_no_conversation_plaintext(principal_of):
    owner = User.objects.create_user("crypto-owner", password="x" * 16)  # noqa: S106
    conversation, _ = _conversation(owner)
    with owner_role(), connection.cursor() as cursor:
        cursor.execute(
            "SELECT row_to_json(c)::text FROM app_conversation c WHERE id = %s",
            [conversation.pk],
        )
        (conversation_row,) = cursor.fetchone()
        cursor.execute(
            "SELECT string_agg(row_to_json(m)::text, ' ') FROM app_message m"
            " WHERE conversation_id = %s",
            [conversation.pk],
        )
        (message_rows,) = cursor.fetchone()
        cursor.execute("SELECT encode(content_ct, 'escape') FROM app_message")
        raw_bytes = " ".join(row[0] for row in cursor.fetchall())
    for needle in ("Lisbon", "layoffs", "Northwind", "41 per share"):
        assert needle not in conversation_row
        assert needle not in message_rows
        assert needle not in raw_bytes
    # ... and the owner reads it back through the service layer.
    detail = conversation_read(principal_of("crypto-owner"), conversation)
    assert detail.title == SECRET_TITLE
    assert [m.content for m in detail.messages] == [SECRET_TEXT]


@pytest.mark.django_db
def test_chat_api_stores_ciphertext_and_reads_back_plaintext(client, bearer):
    response = client.post(
        "/api/v1/chat",
        data=json.dumps({"message": "What is the travel per diem?"}),
        content_type="application/json",
        **bearer("alice"),
    )
    assert response.status_code == 200, response.content
    conversation = Conversation.objects.get(pk=response.json()["conversation"])
    assert b"per diem" not in bytes(conversation.title_ct)
    assert all(
        b"per diem" not in bytes(m.content_ct)
        for m in Message.objects.filter(conversation=conversation)
    )
    listing = client.get("/api/v1/conversations", **bearer("alice")).json()
    assert listing["conversations"][0]["title"] == "What is the travel per diem?"
    detail = client.get(f"/api/v1/conversations/{conversation.pk}", **bearer("alice")).json()
    assert detail["title"] == "What is the travel per diem?"
    assert detail["messages"][0]["content"] == "What is the travel per diem?"
    assert detail["messages"][1]["content"] == response.json()["answer"]


@pytest.mark.django_db
def test_ciphertext_moved_to_another_row_fails_to_decrypt(user_named, principal_of):
    alice = user_named("alice")
    first, (m1, m2) = _conversation(alice, texts=("first message", "second message"))
    other, (m3,) = _conversation(alice, title="another title", texts=("third message",))
    principal = principal_of("alice")

    # Two messages of one conversation swap their ciphertext: both fail.
    Message.objects.filter(pk=m1.pk).update(content_ct=m2.content_ct)
    with pytest.raises(ConversationUndecryptable, match=f"app.message:{m1.pk}:content"):
        conversation_read(principal, Conversation.objects.get(pk=first.pk))
    Message.objects.filter(pk=m1.pk).update(content_ct=m1.content_ct)
    assert conversation_read(principal, Conversation.objects.get(pk=first.pk)).messages

    # A title copied from another conversation fails.
    Conversation.objects.filter(pk=first.pk).update(title_ct=other.title_ct)
    with pytest.raises(ConversationUndecryptable, match="title"):
        conversation_read(principal, Conversation.objects.get(pk=first.pk))
    Conversation.objects.filter(pk=first.pk).update(title_ct=first.title_ct)

    # A wrapped data key copied from another conversation does not unwrap here.
    Conversation.objects.filter(pk=first.pk).update(data_key=other.data_key)
    with pytest.raises(KeyUnavailable, match="does not unwrap"):
        conversation_read(principal, Conversation.objects.get(pk=first.pk))


@pytest.mark.django_db
def test_wrong_or_missing_kek_fails_closed(monkeypatch, settings, user_named, client, bearer):
    keys = {"k1": _key()}
    _keyring_env(monkeypatch, settings, "k1", keys)
    conversation, _ = _conversation(user_named("alice"))
    assert conversation.kek_id == "local:k1"

    # The same KEK id with different key material: refused, nothing shown.
    _keyring_env(monkeypatch, settings, "k1", {"k1": _key()})
    response = client.get(f"/api/v1/conversations/{conversation.pk}", **bearer("alice"))
    assert response.status_code == 503
    assert response.json()["error"] == "key_unavailable"
    assert "Northwind" not in response.content.decode()
    listing = client.get("/api/v1/conversations", **bearer("alice"))
    assert listing.status_code == 503
    assert "Lisbon" not in listing.content.decode()

    # The KEK is gone from the keyring: a clear error naming it.
    _keyring_env(monkeypatch, settings, "k9", {"k9": _key()})
    with pytest.raises(KeyUnavailable, match="KEK local:k1 is not in the local keyring"):
        conversation_list(user_principal(user_named("alice")), limit=10)

    # No keyring configured at all (and no derived dev key allowed): refused before use.
    settings.CONVERSATION_KEK_LOCAL_REF = ""
    settings.CONVERSATION_KEK_ALLOW_DERIVED = False
    with pytest.raises(KeyUnavailable, match="no conversation KEK configured"):
        _conversation(user_named("alice"))
    settings.CONVERSATION_KEK_LOCAL_REF = "env:UNSET_KEYRING_VARIABLE"
    with pytest.raises(KeyUnavailable, match="UNSET_KEYRING_VARIABLE is not set"):
        _conversation(user_named("alice"))


def user_principal(user: User):
    from app.selectors import principal_for

    return principal_for(user, request_id="test")


@pytest.mark.django_db
def test_rotation_rewraps_every_data_key_so_the_old_kek_can_be_retired(
    monkeypatch, settings, user_named, principal_of, k1_k2
):
    _keyring_env(monkeypatch, settings, "k1", {"k1": k1_k2["k1"]})
    alice, bob = user_named("alice"), user_named("bob")
    made = [_conversation(alice, title=f"alice {i}")[0] for i in range(3)]
    made.append(_conversation(bob, title="bob 0")[0])
    assert {c.kek_id for c in made} == {"local:k1"}

    # A new KEK becomes current; new conversations use it, old ones still need k1.
    _keyring_env(monkeypatch, settings, "k2", k1_k2)
    newer, _ = _conversation(alice, title="alice new")
    assert newer.kek_id == "local:k2"

    # Before rotation, retiring k1 breaks the old rows (so rotation is what saves them).
    _keyring_env(monkeypatch, settings, "k2", {"k2": k1_k2["k2"]})
    with pytest.raises(KeyUnavailable, match="local:k1"):
        conversation_read(principal_of("alice"), Conversation.objects.get(pk=made[0].pk))

    _keyring_env(monkeypatch, settings, "k2", k1_k2)
    out = StringIO()
    call_command("rotate_conversation_keys", "--batch", "2", stdout=out)
    ours = Conversation.objects.filter(pk__in=[c.pk for c in [*made, newer]])
    assert set(ours.values_list("kek_id", flat=True)) == {"local:k2"}
    assert "rewrapped" in out.getvalue()
    events = AuditEvent.objects.filter(event_type=EventType.KEYS_ROTATED)
    assert events.count() >= 2  # batches of two
    assert sum(e.metadata["rewrapped"] for e in events) >= len(made)
    assert all(e.metadata["to"] == "local:k2" for e in events)

    # Idempotent: a second run re-wraps nothing and writes no event.
    again = StringIO()
    call_command("rotate_conversation_keys", stdout=again)
    assert "rewrapped 0 data keys" in again.getvalue()
    assert AuditEvent.objects.filter(event_type=EventType.KEYS_ROTATED).count() == events.count()

    # k1 retired: everything still decrypts, content unchanged.
    _keyring_env(monkeypatch, settings, "k2", {"k2": k1_k2["k2"]})
    detail = conversation_read(principal_of("alice"), Conversation.objects.get(pk=made[0].pk))
    assert detail.title == "alice 0"
    assert [m.content for m in detail.messages] == [SECRET_TEXT]
    titles = {c.title for c in conversation_list(principal_of("alice"), limit=50)}
    assert {"alice 0", "alice 1", "alice 2", "alice new"} <= titles


@pytest.mark.django_db
def test_a_page_of_fifty_messages_unwraps_its_data_key_once(monkeypatch, client, user_named):
    alice = user_named("alice")
    conversation, _ = _conversation(alice, texts=tuple(f"message {i}" for i in range(50)))
    for i in range(10):
        _conversation(alice, title=f"other {i}")
    calls: list[int] = []
    original = LocalKeyring.unwrap_many

    def counting(self, items):
        calls.append(len(items))
        return original(self, items)

    monkeypatch.setattr(keyring_module.LocalKeyring, "unwrap_many", counting)
    client.force_login(alice)
    page = client.get(f"/c/{conversation.pk}/")
    assert page.status_code == 200
    body = page.content.decode()
    assert "message 0" in body
    assert "message 49" in body
    assert "other 9" in body
    # One call for the sidebar's titles (all of them at once), one for this conversation.
    assert len(calls) == 2
    assert calls[0] >= 11 or calls[1] >= 11


@pytest.mark.django_db(transaction=True)
def test_migration_encrypts_existing_plaintext_rows():
    owner = User.objects.create_user("crypto-legacy", password="x" * 16)  # noqa: S106
    with owner_role():
        executor = MigrationExecutor(connection)
        executor.migrate([("app", "0003_conversation_encryption_fields")])
        with connection.cursor() as cursor:
            cursor.execute(
                "INSERT INTO app_conversation (owner_id, title, kek_id, created_at, updated_at)"
                " VALUES (%s, %s, '', now(), now()) RETURNING id",
                [owner.pk, SECRET_TITLE],
            )
            (conversation_id,) = cursor.fetchone()
            cursor.execute(
                "INSERT INTO app_message (conversation_id, role, content, provider, blocked,"
                " reason, request_id, created_at) VALUES (%s, 'user', %s, '', false, '', '',"
                " now())",
                [conversation_id, SECRET_TEXT],
            )
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT row_to_json(c)::text FROM app_conversation c WHERE id = %s",
                [conversation_id],
            )
            assert "Lisbon" not in cursor.fetchone()[0]
    conversation = Conversation.objects.get(pk=conversation_id)
    detail = conversation_read(user_principal(owner), conversation)
    assert detail.title == SECRET_TITLE
    assert [m.content for m in detail.messages] == [SECRET_TEXT]
