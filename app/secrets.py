"""Resolve secret references (`env:NAME`, `file:/path`, `vault:mount/path#key`).

One helper for every secret the application reads, so that a missing mandatory secret
fails at start-up with a message naming it, and no secret is ever written in settings.
"""

from __future__ import annotations

import os
from pathlib import Path


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
        raise SecretUnavailable("vault: references need the vault integration (not configured)")
    raise SecretUnavailable(f"unknown secret reference scheme {scheme!r}")


def get_mandatory_secret(name: str) -> str:
    """Read secret `name` from `NAME` or from the reference in `NAME_REF`."""
    ref = os.environ.get(f"{name}_REF")
    if ref:
        return resolve_secret(ref)
    value = os.environ.get(name)
    if not value:
        raise SecretUnavailable(f"mandatory secret {name} is not set (set {name} or {name}_REF)")
    return value
