"""The audit hash chain: each event's hash covers its content and the previous hash.

Pure functions, shared by the writer (`audit.services.audit_record`) and the verifier
(`verify_audit`), so both compute exactly the same bytes. Changing what is hashed needs a
new CHAIN_VERSION and a checkpoint, never an in-place edit.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any

CHAIN_VERSION = 1
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
) -> bytes:
    """Deterministic bytes for one event (sorted keys, no whitespace, ASCII only)."""
    body = {
        "v": CHAIN_VERSION,
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
    return hashlib.sha256(prev_hash.encode() + b"\n" + payload).hexdigest()
