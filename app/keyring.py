"""Key-encryption keys (KEKs) for envelope encryption of conversations.

A data key (AES-256) encrypts a conversation's text; the KEK only wraps data keys. Two
backends, chosen by CONVERSATION_KEK_BACKEND:

- `local`: a versioned keyring from the secrets interface (CONVERSATION_KEK_LOCAL_REF, a
  JSON document `{"current": ID, "keys": {ID: base64 32 bytes, ...}}`); wrapping is
  AES-256-GCM with the wrapping context as associated data. For development and tests.
- `vault`: HashiCorp Vault / OpenBao Transit (key CONVERSATION_KEK_TRANSIT_KEY under
  CONVERSATION_KEK_TRANSIT_MOUNT, created with `derived=true`): the key never leaves
  Vault; the wrapping context is the derivation context, so a wrapped key only unwraps
  for the conversation it was made for. Batch endpoints keep a page to one round trip.

Every failure to unwrap raises `KeyUnavailable` with a reason that names the KEK, never
key material: reads fail closed.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

from app.secrets import SecretUnavailable, resolve_secret, vault_session

NONCE_BYTES = 12
KEY_BYTES = 32


class KeyUnavailable(RuntimeError):
    """A data key cannot be wrapped or unwrapped: the KEK is missing, retired or wrong, or
    the key service is unreachable."""


@dataclass(frozen=True, slots=True)
class WrappedKey:
    """A data key wrapped by the KEK `kek_id` (`local:<id>` or `transit:<name>:v<n>`)."""

    kek_id: str
    blob: bytes


class Keyring(Protocol):
    def current_id(self) -> str: ...

    def wrap(self, data_key: bytes, *, context: bytes) -> WrappedKey: ...

    def unwrap_many(self, items: Sequence[tuple[WrappedKey, bytes]]) -> list[bytes]: ...

    def rewrap_many(self, items: Sequence[tuple[WrappedKey, bytes]]) -> list[WrappedKey]: ...


# --- local ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalKeyring:
    current: str
    keys: dict[str, bytes]

    @classmethod
    def from_document(cls, document: str) -> LocalKeyring:
        try:
            data = json.loads(document)
            current = str(data["current"])
            keys = {str(k): base64.b64decode(v, validate=True) for k, v in data["keys"].items()}
        except (ValueError, KeyError, TypeError, AttributeError, binascii.Error):
            raise KeyUnavailable(
                'local KEK keyring is malformed (expected {"current": ID, "keys": {ID: base64}})'
            ) from None
        bad = sorted(k for k, v in keys.items() if len(v) != KEY_BYTES)
        if bad:
            raise KeyUnavailable(f"local KEK(s) {', '.join(bad)} are not {KEY_BYTES} bytes")
        if current not in keys:
            raise KeyUnavailable(f"local KEK keyring: the current KEK {current!r} is not in it")
        return cls(current=current, keys=keys)

    def current_id(self) -> str:
        return f"local:{self.current}"

    def wrap(self, data_key: bytes, *, context: bytes) -> WrappedKey:
        nonce = os.urandom(NONCE_BYTES)
        blob = nonce + AESGCM(self.keys[self.current]).encrypt(nonce, data_key, context)
        return WrappedKey(kek_id=self.current_id(), blob=blob)

    def _unwrap(self, wrapped: WrappedKey, context: bytes) -> bytes:
        scheme, _, kek = wrapped.kek_id.partition(":")
        key = self.keys.get(kek) if scheme == "local" else None
        if key is None:
            raise KeyUnavailable(f"KEK {wrapped.kek_id} is not in the local keyring")
        try:
            return AESGCM(key).decrypt(
                wrapped.blob[:NONCE_BYTES], wrapped.blob[NONCE_BYTES:], context
            )
        except InvalidTag:
            raise KeyUnavailable(
                f"the data key does not unwrap under KEK {wrapped.kek_id} for this record"
            ) from None

    def unwrap_many(self, items: Sequence[tuple[WrappedKey, bytes]]) -> list[bytes]:
        return [self._unwrap(wrapped, context) for wrapped, context in items]

    def rewrap_many(self, items: Sequence[tuple[WrappedKey, bytes]]) -> list[WrappedKey]:
        return [
            wrapped
            if wrapped.kek_id == self.current_id()
            else self.wrap(self._unwrap(wrapped, context), context=context)
            for wrapped, context in items
        ]


# --- vault transit ------------------------------------------------------------------------


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@dataclass(frozen=True)
class TransitKeyring:
    mount: str
    name: str

    def _call(self, method: str, **kwargs: Any) -> Any:
        import hvac.exceptions
        import requests

        session = vault_session()
        transit = session.current_client().secrets.transit
        try:
            try:
                return getattr(transit, method)(name=self.name, mount_point=self.mount, **kwargs)
            except hvac.exceptions.Forbidden:
                if session.token:
                    raise
                transit = session.relogin().secrets.transit
                return getattr(transit, method)(name=self.name, mount_point=self.mount, **kwargs)
        except hvac.exceptions.Forbidden:
            raise KeyUnavailable(
                f"transit key {self.mount}/{self.name}: permission denied"
            ) from None
        except hvac.exceptions.InvalidRequest as exc:
            # Vault answers 400 for a retired version (below min_decryption_version), a
            # wrong context or a tampered ciphertext; the message names no key material.
            detail = "; ".join(str(e) for e in (exc.errors or []))[:200]
            raise KeyUnavailable(
                f"transit key {self.mount}/{self.name} refused the data key ({detail})"
            ) from None
        except hvac.exceptions.VaultError as exc:
            raise KeyUnavailable(
                f"transit key {self.mount}/{self.name}: vault error ({type(exc).__name__})"
            ) from None
        except requests.RequestException:
            raise KeyUnavailable(
                f"transit key {self.mount}/{self.name}: cannot reach vault"
            ) from None
        except SecretUnavailable as exc:
            raise KeyUnavailable(str(exc)) from None

    def _kek_id(self, ciphertext: str) -> str:
        # "vault:v3:..." -> "transit:<name>:v3"
        return f"transit:{self.name}:{ciphertext.split(':', 2)[1]}"

    def current_id(self) -> str:
        data = self._call("read_key")["data"]
        return f"transit:{self.name}:v{data['latest_version']}"

    def wrap(self, data_key: bytes, *, context: bytes) -> WrappedKey:
        reply = self._call("encrypt_data", plaintext=_b64(data_key), context=_b64(context))
        ciphertext = str(reply["data"]["ciphertext"])
        return WrappedKey(kek_id=self._kek_id(ciphertext), blob=ciphertext.encode())

    def unwrap_many(self, items: Sequence[tuple[WrappedKey, bytes]]) -> list[bytes]:
        if not items:
            return []
        batch = [{"ciphertext": w.blob.decode(), "context": _b64(c)} for w, c in items]
        results = self._call("decrypt_data", batch_input=batch)["data"]["batch_results"]
        keys = []
        for (wrapped, _), result in zip(items, results, strict=True):
            if result.get("error") or "plaintext" not in result:
                raise KeyUnavailable(
                    f"transit key {self.mount}/{self.name} refused a data key wrapped by"
                    f" {wrapped.kek_id} ({str(result.get('error', 'no plaintext'))[:200]})"
                )
            keys.append(base64.b64decode(result["plaintext"]))
        return keys

    def rewrap_many(self, items: Sequence[tuple[WrappedKey, bytes]]) -> list[WrappedKey]:
        if not items:
            return []
        batch = [{"ciphertext": w.blob.decode(), "context": _b64(c)} for w, c in items]
        # hvac insists on a `ciphertext` argument even when a batch is given.
        reply = self._call("rewrap_data", ciphertext=batch[0]["ciphertext"], batch_input=batch)
        wrapped = []
        for (old, _), result in zip(items, reply["data"]["batch_results"], strict=True):
            if result.get("error") or "ciphertext" not in result:
                raise KeyUnavailable(
                    f"transit key {self.mount}/{self.name} could not rewrap a data key wrapped"
                    f" by {old.kek_id} ({str(result.get('error', 'no ciphertext'))[:200]})"
                )
            ciphertext = str(result["ciphertext"])
            wrapped.append(WrappedKey(kek_id=self._kek_id(ciphertext), blob=ciphertext.encode()))
        return wrapped


# --- configuration ------------------------------------------------------------------------


def _dev_keyring() -> LocalKeyring:
    """Development and tests without a configured keyring: one KEK derived from SECRET_KEY.
    Production refuses this (app/settings/prod.py)."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    key = HKDF(
        algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None, info=b"conversation-kek-dev"
    ).derive(settings.SECRET_KEY.encode())
    return LocalKeyring(current="dev", keys={"dev": key})


def keyring() -> Keyring:
    """The configured KEK backend. Built per call (the local keyring is re-read through the
    secrets interface, so a rotated secret file takes effect without a restart)."""
    backend = settings.CONVERSATION_KEK_BACKEND
    if backend == "vault":
        return TransitKeyring(
            mount=settings.CONVERSATION_KEK_TRANSIT_MOUNT,
            name=settings.CONVERSATION_KEK_TRANSIT_KEY,
        )
    if backend != "local":
        raise KeyUnavailable(f"unknown CONVERSATION_KEK_BACKEND {backend!r} (local or vault)")
    ref = settings.CONVERSATION_KEK_LOCAL_REF
    if not ref:
        if not settings.CONVERSATION_KEK_ALLOW_DERIVED:
            raise KeyUnavailable(
                "no conversation KEK configured: set CONVERSATION_KEK_LOCAL_REF or"
                " CONVERSATION_KEK_BACKEND=vault"
            )
        return _dev_keyring()
    try:
        document = resolve_secret(ref)
    except SecretUnavailable as exc:
        raise KeyUnavailable(f"conversation KEK keyring unavailable: {exc}") from None
    return LocalKeyring.from_document(document)


def new_local_keyring_document(key_id: str) -> str:
    """A fresh one-key keyring document (`manage.py` users and tests)."""
    return json.dumps({"current": key_id, "keys": {key_id: _b64(os.urandom(KEY_BYTES))}})
