"""The table statistics the search settings scale by (retrieval.selectors), refreshed."""

from __future__ import annotations

from django.db import connection

from tests.db_roles import owner_role


def analysed_chunks_and_passages() -> tuple[float, float]:
    """ANALYZE the retrieval tables as their owner (committed rows only), then the planner's
    row counts of chunks and passages, as the scaling reads them."""
    with owner_role(), connection.cursor() as cursor:
        cursor.execute("ANALYZE retrieval_chunk, retrieval_passage, retrieval_document")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT (SELECT reltuples FROM pg_class WHERE oid = 'retrieval_chunk'::regclass),"
            " (SELECT reltuples FROM pg_class WHERE oid = 'retrieval_passage'::regclass)"
        )
        chunks, passages = cursor.fetchone()
    return float(chunks), float(passages)
