"""Verifying the audit chain: every row's hash recomputed, every link checked."""

from __future__ import annotations

from dataclasses import dataclass

from audit.chain import CHAIN_VERSION, GENESIS_HASH, LEGACY_VERSION
from audit.models import AuditEvent, EventType
from audit.services import row_version


@dataclass(frozen=True, slots=True)
class ChainReport:
    checked: int
    breaks: tuple[str, ...]
    # The newest row's hash: record it outside the database (a SIEM, a ticket) to detect
    # later removal of the newest rows, which no check inside the database can see.
    head: str = GENESIS_HASH

    @property
    def ok(self) -> bool:
        return not self.breaks


def verify_chain(*, max_breaks: int = 20) -> ChainReport:
    """Walk the chain in id order. A row whose content changed fails its own hash; a row
    deleted, inserted or reordered fails the link of the row after it. The first row links
    to the genesis hash, or — after a retention purge — to the boundary hash named by a
    `retention.checkpoint` event that is itself part of the verified chain."""
    breaks: list[str] = []
    keyed_seen = False
    expected_prev = GENESIS_HASH
    checked = 0
    anchor: str | None = None
    verified: set[str] = set()
    for event in AuditEvent.objects.order_by("id").iterator(chunk_size=2000):
        checked += 1
        if checked == 1 and event.prev_hash != GENESIS_HASH:
            # Rows before this one were purged: a checkpoint must vouch for exactly them.
            anchor = expected_prev = event.prev_hash
        if event.prev_hash != expected_prev:
            breaks.append(f"event {event.pk}: link broken (previous row missing or altered)")
        version = row_version(event)
        if version is None:
            breaks.append(
                f"event {event.pk}: content does not match its hash (altered, or written"
                " without the chain key)"
            )
        elif version == LEGACY_VERSION and keyed_seen:
            breaks.append(f"event {event.pk}: unkeyed hash after keyed rows (forged)")
        elif event.event_type == EventType.RETENTION_CHECKPOINT:
            verified.add(str(event.metadata.get("through_hash", "")))
        keyed_seen = keyed_seen or version == CHAIN_VERSION
        expected_prev = event.row_hash
        if len(breaks) >= max_breaks:
            break
    if anchor is not None and anchor not in verified and len(breaks) < max_breaks:
        breaks.insert(
            0,
            "chain start: the first row does not follow the genesis hash or any verified"
            " retention checkpoint (rows before it were removed)",
        )
    return ChainReport(checked=checked, breaks=tuple(breaks), head=expected_prev)
