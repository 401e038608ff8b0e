"""Conversation data keys wrapped by a Vault/OpenBao Transit key, against a real
`bao server -dev`: wrap/unwrap bound to the conversation, one batch call per list, key
versions, and rotation by `rewrap` so an old key version can be retired."""

from __future__ import annotations

import secrets
from io import StringIO

import hvac
import pytest
from django.core.management import call_command

from app import secrets as app_secrets
from app.conversation_crypto import NewMessage, conversation_create, messages_add
from app.keyring import KeyUnavailable, TransitKeyring
from app.models import Conversation, Message
from app.selectors import conversation_list, conversation_read, principal_for
from audit.models import AuditEvent, EventType


@pytest.fixture
def transit(vault_server, monkeypatch, settings):
    """A fresh derived Transit key, and the app pointed at it with a token."""
    root = hvac.Client(url=vault_server.addr, token=vault_server.root_token)
    if "transit/" not in root.sys.list_mounted_secrets_engines():
        root.sys.enable_secrets_engine("transit")
    name = "conversations-" + secrets.token_hex(4)
    root.secrets.transit.create_key(name=name, derived=True)
    for var in ("VAULT_ROLE_ID", "VAULT_SECRET_ID"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("VAULT_ADDR", vault_server.addr)
    monkeypatch.setenv("VAULT_TOKEN", vault_server.root_token)
    app_secrets._SESSIONS.clear()
    settings.CONVERSATION_KEK_BACKEND = "vault"
    settings.CONVERSATION_KEK_TRANSIT_MOUNT = "transit"
    settings.CONVERSATION_KEK_TRANSIT_KEY = name
    yield root, name
    app_secrets._SESSIONS.clear()


def _make(owner_id: int, title: str, text: str) -> Conversation:
    conversation, key = conversation_create(owner_id=owner_id, title=title)
    messages_add(
        conversation=conversation,
        key=key,
        messages=[NewMessage(role=Message.Role.USER, content=text)],
    )
    return conversation


@pytest.mark.django_db
def test_vault_transit_wraps_data_keys_and_reads_decrypt(transit, user_named, principal_of):
    root, name = transit
    alice = user_named("alice")
    made = _make(alice.pk, "vault title", "vault secret text")
    assert made.kek_id == f"transit:{name}:v1"
    assert bytes(made.data_key).startswith(b"vault:v1:")
    detail = conversation_read(principal_of("alice"), Conversation.objects.get(pk=made.pk))
    assert detail.title == "vault title"
    assert [m.content for m in detail.messages] == ["vault secret text"]

    # The wrapped key is bound to its conversation (Transit derivation context).
    other = _make(alice.pk, "other", "other text")
    Conversation.objects.filter(pk=made.pk).update(data_key=other.data_key)
    with pytest.raises(KeyUnavailable, match=f"transit key transit/{name} refused"):
        conversation_read(principal_of("alice"), Conversation.objects.get(pk=made.pk))


@pytest.mark.django_db
def test_vault_list_of_conversations_is_one_batch_round_trip(
    transit, user_named, principal_of, monkeypatch
):
    alice = user_named("alice")
    for i in range(12):
        _make(alice.pk, f"title {i}", "x")
    calls: list[str] = []
    original = TransitKeyring._call

    def counting(self, method, **kwargs):
        calls.append(method)
        return original(self, method, **kwargs)

    monkeypatch.setattr(TransitKeyring, "_call", counting)
    titles = {c.title for c in conversation_list(principal_of("alice"), limit=50)}
    assert {f"title {i}" for i in range(12)} <= titles
    assert calls == ["decrypt_data"]


@pytest.mark.django_db
def test_vault_rotation_rewraps_so_the_old_key_version_can_be_retired(
    transit, user_named, principal_of
):
    root, name = transit
    alice = user_named("alice")
    old = [_make(alice.pk, f"old {i}", f"old text {i}") for i in range(3)]
    root.secrets.transit.rotate_key(name=name)
    newer = _make(alice.pk, "new", "new text")
    assert newer.kek_id == f"transit:{name}:v2"

    # Before rotation, retiring version 1 breaks the old rows.
    root.secrets.transit.update_key_configuration(name=name, min_decryption_version=2)
    with pytest.raises(KeyUnavailable, match="refused"):
        conversation_read(principal_of("alice"), Conversation.objects.get(pk=old[0].pk))
    root.secrets.transit.update_key_configuration(name=name, min_decryption_version=1)

    out = StringIO()
    call_command("rotate_conversation_keys", "--batch", "2", stdout=out)
    assert f"current KEK transit:{name}:v2" in out.getvalue()
    ours = Conversation.objects.filter(pk__in=[c.pk for c in [*old, newer]])
    assert set(ours.values_list("kek_id", flat=True)) == {f"transit:{name}:v2"}
    assert all(bytes(c.data_key).startswith(b"vault:v2:") for c in ours)
    event = AuditEvent.objects.filter(event_type=EventType.KEYS_ROTATED).latest("id")
    assert event.metadata["to"] == f"transit:{name}:v2"
    assert f"transit:{name}:v1" in event.metadata["from"]

    # Version 1 retired: everything still decrypts.
    root.secrets.transit.update_key_configuration(name=name, min_decryption_version=2)
    for conversation, i in zip(old, range(3), strict=True):
        detail = conversation_read(
            principal_of("alice"), Conversation.objects.get(pk=conversation.pk)
        )
        assert detail.title == f"old {i}"
        assert [m.content for m in detail.messages] == [f"old text {i}"]


@pytest.mark.django_db
def test_vault_unreachable_or_denied_fails_closed(transit, user_named, monkeypatch):
    alice = user_named("alice")
    made = _make(alice.pk, "t", "x")
    monkeypatch.setenv("VAULT_TOKEN", "hvs." + secrets.token_hex(12))
    app_secrets._SESSIONS.clear()
    with pytest.raises(KeyUnavailable, match="permission denied"):
        conversation_read(
            principal_for(alice, request_id="t"),
            Conversation.objects.get(pk=made.pk),
        )
    monkeypatch.setenv("VAULT_ADDR", "http://127.0.0.1:9")
    app_secrets._SESSIONS.clear()
    with pytest.raises(KeyUnavailable, match="cannot reach vault"):
        _make(alice.pk, "t", "x")
