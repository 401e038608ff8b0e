"""Row-level security context: who the database should consider to be asking.

PostgreSQL enforces the access rule on documents, chunks and passages itself (retrieval
migrations 0003, 0004 and 0009), reading it from per-transaction settings. Outside any
scope it shows nothing.

- `principal_scope(principal)`: only rows the principal may read, whatever the query says.
  Every retrieval selector runs inside one, so a query that forgets the ACL filter still
  returns only permitted rows.
- `privileged_scope(reason)`: every row. The explicit path for ingestion, indexing, the
  demo seed and admin pages; grep for it to find every place that sees all data.

Scopes nest: leaving one restores the settings that were in force before it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager

from django.db import connection, transaction

from app.identity import Principal, Tier

_KEYS = (
    "app.rls_mode",
    "app.user_id",
    "app.clearance",
    "app.group_ids",
    "app.privileged_ceiling",
    "app.access_tokens",
)
_SET = "SELECT " + ", ".join(f"set_config('{key}', %s, true)" for key in _KEYS)
_SET_AND_READ_PREVIOUS = (
    "SELECT "
    + ", ".join(f"coalesce(current_setting('{key}', true), '')" for key in _KEYS)
    + ", "
    + ", ".join(f"set_config('{key}', %s, true)" for key in _KEYS)
)


@contextmanager
def _scope(values: tuple[str, str, str, str, str, str]) -> Iterator[None]:
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(_SET_AND_READ_PREVIOUS, list(values))
        row = cursor.fetchone()
        previous = tuple(row[: len(_KEYS)]) if row else ("",) * len(_KEYS)
        yield
        # Only on a clean exit: after an error the savepoint rollback restores them.
        cursor.execute(_SET, list(previous))


# The tables whose rows carry document content or its embedding; each forces RLS.
RLS_TABLES = frozenset({"retrieval_document", "retrieval_chunk", "retrieval_passage"})

PRIVILEGED_GRANT = "*"  # every passage carries it; no principal's tokens include it


def access_tokens(principal: Principal) -> list[str]:
    """The passage access tokens that match this principal (see retrieval.models.Passage):
    at every tier up to their clearance, everyone-signed-in, the user, each of their groups."""
    tokens: list[str] = []
    for tier in range(int(principal.clearance) + 1):
        tokens.append(f"a@{tier}")
        tokens.append(f"u{principal.user_id}@{tier}")
        tokens.extend(f"g{group}@{tier}" for group in principal.group_ids)
    return tokens


def principal_scope(principal: Principal) -> AbstractContextManager[None]:
    return _scope(
        (
            "principal",
            str(principal.user_id),
            str(int(principal.clearance)),
            ",".join(str(g) for g in principal.group_ids),
            "",
            ",".join(access_tokens(principal)),
        )
    )


def privileged_scope(reason: str) -> AbstractContextManager[None]:
    """All rows, for a named reason (kept short: it is for readers of the code)."""
    if not reason:
        raise ValueError("a privileged scope needs a reason")
    return _scope(("privileged", "", "", "", str(int(max(Tier))), PRIVILEGED_GRANT))
