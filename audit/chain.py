"""The audit hash chain: each event's hash covers its content and the previous hash.

Pure functions, shared by the writer (`audit.services.audit_record`) and the verifier
(`verify_audit`), so both compute exactly the same bytes. Changing what is hashed needs a
new chain version, never an in-place edit.

Version 1 (rows written before the chain was keyed): SHA-256. Anyone able to insert rows
could compute it, so forged rows appended at the end would verify. Version 2: HMAC-SHA-256
under a key held by the application, not the database. A chain may start with version-1
rows; once a version-2 row appears, every later row must be version 2.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

LEGACY_VERSION = 1
CHAIN_VERSION = 2
GENESIS_HASH = "0" * 64


def canonical_payload(
    *,
    created_at: datetime,
    request_id: str,
    actor_id: int | None,
    token_id: str,
    event_type: str,
    subject: str,
    decision: str,
    reason: str,
    metadata: dict[str, Any],
    version: int = LEGACY_VERSION,
) -> bytes:
    """Deterministic bytes for one event (sorted keys, no whitespace, ASCII only). The
    default version is 1 because migration audit/0002 hashed the first rows with it."""
    body = {
        "v": version,
        "created_at": created_at.isoformat(timespec="microseconds"),
        "request_id": request_id,
        "actor_id": actor_id,
        "token_id": token_id,
        "event_type": event_type,
        "subject": subject,
        "decision": decision,
        "reason": reason,
        "metadata": metadata,
    }
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def chain_hash(prev_hash: str, payload: bytes) -> str:
    """Version 1 (legacy, unkeyed)."""
    return hashlib.sha256(prev_hash.encode() + b"\n" + payload).hexdigest()


def keyed_chain_hash(prev_hash: str, payload: bytes, key: bytes) -> str:
    """Version 2: only a holder of `key` can produce it."""
    return hmac.new(key, prev_hash.encode() + b"\n" + payload, hashlib.sha256).hexdigest()
