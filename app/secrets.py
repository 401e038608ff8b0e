"""Resolve secret references (`env:NAME`, `file:/path`, `vault:mount/path#key`).

One helper for every secret the application reads, so that a missing mandatory secret
fails at start-up with a message naming it, and no secret is ever written in settings.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class SecretUnavailable(RuntimeError):
    """A secret reference could not be resolved."""


def resolve_secret(ref: str) -> str:
    """Return the secret named by `ref`; raise SecretUnavailable with a clear reason."""
    scheme, sep, rest = ref.partition(":")
    if not sep or not rest:
        raise SecretUnavailable(
            f"malformed secret reference {ref!r} (expected env:, file: or vault:)"
        )
    if scheme == "env":
        value = os.environ.get(rest)
        if not value:
            raise SecretUnavailable(f"environment variable {rest} is not set")
        return value
    if scheme == "file":
        try:
            value = Path(rest).read_text().strip()
        except OSError as exc:
            raise SecretUnavailable(f"cannot read secret file {rest}: {exc.strerror}") from None
        if not value:
            raise SecretUnavailable(f"secret file {rest} is empty")
        return value
    if scheme == "vault":
        return _resolve_vault(rest)
    raise SecretUnavailable(f"unknown secret reference scheme {scheme!r}")


# --- vault: HashiCorp Vault / OpenBao, KV version 2 ---------------------------------------

_RENEW_WHEN_LEFT = 1 / 3  # renew a login token once two thirds of its TTL have passed


@dataclass
class _VaultSession:
    """One authenticated hvac client per process and credential set. AppRole logins are
    renewed before they expire and repeated when the token is revoked or past its max TTL;
    a static VAULT_TOKEN is used as given (its owner renews it)."""

    addr: str
    token: str | None
    role_id: str | None
    secret_id: str | None
    client: Any = None
    expires_at: float | None = None
    ttl_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _new_client(self) -> Any:
        import hvac

        return hvac.Client(url=self.addr, timeout=5, verify=os.environ.get("VAULT_CACERT") or True)

    def _login(self) -> None:
        client = self._new_client()
        if self.token:
            client.token = self.token
            self.client, self.expires_at = client, None
            return
        auth = client.auth.approle.login(role_id=self.role_id, secret_id=self.secret_id)["auth"]
        ttl = float(auth.get("lease_duration") or 0)
        self.client, self.ttl_s = client, ttl
        self.expires_at = time.monotonic() + ttl if ttl else None

    def _renew_if_due(self) -> None:
        if self.expires_at is None or self.token:
            return
        left = self.expires_at - time.monotonic()
        if left > self.ttl_s * _RENEW_WHEN_LEFT:
            return
        try:
            auth = self.client.auth.token.renew_self()["auth"]
            ttl = float(auth.get("lease_duration") or 0)
            if ttl <= max(left, 0):  # at its max TTL: renewal no longer extends it
                raise RuntimeError("token at max TTL")
            self.ttl_s, self.expires_at = ttl, time.monotonic() + ttl
        except Exception:  # noqa: BLE001 - any failure: log in afresh
            self._login()

    def current_client(self) -> Any:
        """The logged-in client, renewed first when its login is due for renewal."""
        with self.lock:
            if self.client is None:
                self._login()
            else:
                self._renew_if_due()
            return self.client

    def relogin(self) -> Any:
        """Log in afresh (after a Forbidden: the login token was revoked or expired)."""
        with self.lock:
            self._login()
            return self.client

    def read(self, mount: str, path: str) -> dict[str, Any]:
        import hvac.exceptions

        client = self.current_client()
        try:
            return _kv2_read(client, mount, path)
        except hvac.exceptions.Forbidden:
            if self.token:
                raise
            # The login token was revoked or expired: log in once more.
            return _kv2_read(self.relogin(), mount, path)


def _kv2_read(client: Any, mount: str, path: str) -> dict[str, Any]:
    response = client.secrets.kv.v2.read_secret_version(
        path=path, mount_point=mount, raise_on_deleted_version=True
    )
    data = response["data"]["data"]
    return data if isinstance(data, dict) else {}


_SESSIONS: dict[str, _VaultSession] = {}
_SESSIONS_LOCK = threading.Lock()


def vault_session() -> _VaultSession:
    """The process's Vault session for the configured address and credentials (shared by
    `vault:` secret references and the Transit key-encryption keys in app/keyring.py)."""
    return _vault_session()


def _vault_session() -> _VaultSession:
    addr = os.environ.get("VAULT_ADDR", "")
    token = os.environ.get("VAULT_TOKEN") or None
    role_id = os.environ.get("VAULT_ROLE_ID") or None
    secret_id = os.environ.get("VAULT_SECRET_ID") or None
    if not addr:
        raise SecretUnavailable("vault: references need VAULT_ADDR")
    if not token and not (role_id and secret_id):
        raise SecretUnavailable(
            "vault: references need VAULT_TOKEN, or VAULT_ROLE_ID and VAULT_SECRET_ID (AppRole)"
        )
    # Sessions are keyed by a digest of the credentials, never by the credentials.
    identity = "\0".join([addr, token or "", role_id or "", secret_id or ""])
    key = hashlib.sha256(identity.encode()).hexdigest()
    with _SESSIONS_LOCK:
        session = _SESSIONS.get(key)
        if session is None:
            session = _SESSIONS[key] = _VaultSession(addr, token, role_id, secret_id)
        return session


def _resolve_vault(rest: str) -> str:
    """`vault:MOUNT/PATH#KEY`: the KEY field of the KV v2 secret PATH under MOUNT."""
    import hvac.exceptions
    import requests

    location, _, key = rest.partition("#")
    mount, _, path = location.strip("/").partition("/")
    if not mount or not path or not key:
        raise SecretUnavailable(
            f"malformed vault reference vault:{rest!r} (expected vault:mount/path#key)"
        )
    where = f"vault:{mount}/{path}#{key}"
    try:
        data = _vault_session().read(mount, path)
    except hvac.exceptions.InvalidPath:
        raise SecretUnavailable(f"{where}: no such secret") from None
    except hvac.exceptions.Forbidden:
        raise SecretUnavailable(f"{where}: permission denied (check the token's policy)") from None
    except hvac.exceptions.VaultError as exc:
        raise SecretUnavailable(
            f"{where}: vault refused the request ({type(exc).__name__})"
        ) from None
    except requests.RequestException:
        raise SecretUnavailable(
            f"{where}: cannot reach vault at {os.environ.get('VAULT_ADDR')}"
        ) from None
    value = data.get(key)
    if not isinstance(value, str) or not value:
        raise SecretUnavailable(f"{where}: the secret has no non-empty field {key!r}")
    return value


def get_mandatory_secret(name: str) -> str:
    """Read secret `name` from `NAME` or from the reference in `NAME_REF`."""
    ref = os.environ.get(f"{name}_REF")
    if ref:
        return resolve_secret(ref)
    value = os.environ.get(name)
    if not value:
        raise SecretUnavailable(f"mandatory secret {name} is not set (set {name} or {name}_REF)")
    return value
