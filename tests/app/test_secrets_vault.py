"""`vault:` secret references against a real OpenBao dev server (Vault API, KV v2): token
and AppRole auth, policy enforced, clear failures that never echo a credential, and a
revoked AppRole login replaced by a fresh one."""

from __future__ import annotations

import secrets

import hvac
import pytest

from app import secrets as app_secrets
from app.secrets import SecretUnavailable, get_mandatory_secret, resolve_secret

POLICY = 'path "secret/data/app/*" { capabilities = ["read"] }'


@pytest.fixture
def root(vault_server) -> hvac.Client:
    return hvac.Client(url=vault_server.addr, token=vault_server.root_token)


@pytest.fixture
def vault_env(monkeypatch, vault_server):
    """A clean credential environment and no cached vault sessions."""
    for name in ("VAULT_TOKEN", "VAULT_ROLE_ID", "VAULT_SECRET_ID"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("VAULT_ADDR", vault_server.addr)
    app_secrets._SESSIONS.clear()
    yield monkeypatch
    app_secrets._SESSIONS.clear()


@pytest.fixture
def stored(root) -> dict[str, str]:
    values = {"openai": "sk-" + secrets.token_hex(8), "anthropic": "ak-" + secrets.token_hex(8)}
    root.secrets.kv.v2.create_or_update_secret(path="app/providers", secret=values)
    root.secrets.kv.v2.create_or_update_secret(path="other/team", secret={"key": "theirs"})
    return values


@pytest.fixture
def approle(root) -> tuple[str, str]:
    if "approle/" not in root.sys.list_auth_methods():
        root.sys.enable_auth_method("approle")
    root.sys.create_or_update_policy(name="app-read", policy=POLICY)
    root.auth.approle.create_or_update_approle(
        role_name="app", token_policies=["app-read"], token_ttl="10m", token_max_ttl="30m"
    )
    role_id = root.auth.approle.read_role_id(role_name="app")["data"]["role_id"]
    secret_id = root.auth.approle.generate_secret_id(role_name="app")["data"]["secret_id"]
    return role_id, secret_id


def test_vault_reference_resolves_with_a_token(vault_env, vault_server, stored):
    vault_env.setenv("VAULT_TOKEN", vault_server.root_token)
    assert resolve_secret("vault:secret/app/providers#openai") == stored["openai"]
    assert resolve_secret("vault:secret/app/providers#anthropic") == stored["anthropic"]


def test_vault_reference_resolves_with_approle_and_the_policy_is_enforced(
    vault_env, stored, approle
):
    role_id, secret_id = approle
    vault_env.setenv("VAULT_ROLE_ID", role_id)
    vault_env.setenv("VAULT_SECRET_ID", secret_id)
    assert resolve_secret("vault:secret/app/providers#openai") == stored["openai"]
    with pytest.raises(SecretUnavailable, match="permission denied") as denied:
        resolve_secret("vault:secret/other/team#key")
    assert secret_id not in str(denied.value)
    assert role_id not in str(denied.value)


def test_a_revoked_approle_login_is_replaced_by_a_fresh_one(vault_env, root, stored, approle):
    role_id, secret_id = approle
    vault_env.setenv("VAULT_ROLE_ID", role_id)
    vault_env.setenv("VAULT_SECRET_ID", secret_id)
    assert resolve_secret("vault:secret/app/providers#openai") == stored["openai"]
    (session,) = app_secrets._SESSIONS.values()
    first_token = session.client.token
    root.auth.token.revoke(first_token)
    assert resolve_secret("vault:secret/app/providers#openai") == stored["openai"]
    assert session.client.token != first_token


def test_an_approle_login_due_for_renewal_is_renewed(vault_env, stored, approle):
    role_id, secret_id = approle
    vault_env.setenv("VAULT_ROLE_ID", role_id)
    vault_env.setenv("VAULT_SECRET_ID", secret_id)
    resolve_secret("vault:secret/app/providers#openai")
    (session,) = app_secrets._SESSIONS.values()
    token = session.client.token
    before = session.client.auth.token.lookup_self()["data"]["ttl"]
    assert session.expires_at is not None
    session.expires_at -= session.ttl_s  # as if its whole lifetime had passed
    assert resolve_secret("vault:secret/app/providers#openai") == stored["openai"]
    assert session.client.token == token  # renewed, not replaced
    assert session.client.auth.token.lookup_self()["data"]["ttl"] >= before


@pytest.mark.parametrize(
    ("ref", "message"),
    [
        ("vault:secret/app/missing#openai", "no such secret"),
        ("vault:secret/app/providers#nokey", "no non-empty field 'nokey'"),
        ("vault:secret/app/providers", "malformed vault reference"),
        ("vault:secret#openai", "malformed vault reference"),
    ],
)
def test_vault_failures_are_clear(vault_env, vault_server, stored, ref, message):
    vault_env.setenv("VAULT_TOKEN", vault_server.root_token)
    with pytest.raises(SecretUnavailable, match=message) as failure:
        resolve_secret(ref)
    assert vault_server.root_token not in str(failure.value)


def test_vault_with_a_wrong_token_fails_without_echoing_it(vault_env, stored):
    wrong = "hvs." + secrets.token_hex(12)
    vault_env.setenv("VAULT_TOKEN", wrong)
    with pytest.raises(SecretUnavailable, match="permission denied") as failure:
        resolve_secret("vault:secret/app/providers#openai")
    assert wrong not in str(failure.value)


def test_vault_needs_an_address_and_credentials(vault_env):
    with pytest.raises(SecretUnavailable, match="VAULT_TOKEN, or VAULT_ROLE_ID"):
        resolve_secret("vault:secret/app/providers#openai")
    vault_env.delenv("VAULT_ADDR")
    with pytest.raises(SecretUnavailable, match="VAULT_ADDR"):
        resolve_secret("vault:secret/app/providers#openai")


def test_vault_unreachable_is_reported(vault_env):
    vault_env.setenv("VAULT_ADDR", "http://127.0.0.1:9")
    vault_env.setenv("VAULT_TOKEN", "hvs.whatever")
    with pytest.raises(SecretUnavailable, match="cannot reach vault"):
        resolve_secret("vault:secret/app/providers#openai")


def test_mandatory_secret_from_a_vault_reference(vault_env, vault_server, root):
    key = secrets.token_urlsafe(48)
    root.secrets.kv.v2.create_or_update_secret(path="app/django", secret={"secret_key": key})
    vault_env.setenv("VAULT_TOKEN", vault_server.root_token)
    vault_env.setenv("DJANGO_SECRET_KEY_REF", "vault:secret/app/django#secret_key")
    assert get_mandatory_secret("DJANGO_SECRET_KEY") == key
