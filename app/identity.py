"""The Principal and the data tiers: the one part of `app` every layer may import.

A Principal is built once per request (by `app.middleware.PrincipalMiddleware`) and
passed explicitly to every layer; nothing looks it up from a global.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Tier(enum.IntEnum):
    """Data classification, ordered: a clearance of tier T may read tiers <= T."""

    PUBLIC = 0
    INTERNAL = 1
    CONFIDENTIAL = 2
    RESTRICTED = 3

    @property
    def label(self) -> str:
        return self.name.lower()

    @classmethod
    def parse(cls, value: str | int | Tier) -> Tier:
        """Accept a tier name ("internal"), its rank, or a Tier; raise ValueError otherwise."""
        if isinstance(value, Tier):
            return value
        if isinstance(value, int):
            return cls(value)
        try:
            return cls[value.strip().upper()]
        except KeyError:
            names = ", ".join(t.label for t in cls)
            raise ValueError(f"unknown tier {value!r}; expected one of: {names}") from None

    @classmethod
    def choices(cls) -> list[tuple[int, str]]:
        return [(t.value, t.label) for t in cls]


ALL_SCOPES: frozenset[str] = frozenset({"chat", "search", "documents"})


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is asking, as established for this one request."""

    user_id: int
    username: str
    groups: tuple[str, ...]
    group_ids: tuple[int, ...]
    clearance: Tier
    scopes: frozenset[str]
    request_id: str
    token_id: str | None = None
    is_staff: bool = False

    def has_scope(self, scope: str) -> bool:
        return scope in self.scopes

    def may_read(self, tier: Tier) -> bool:
        return self.clearance >= tier
