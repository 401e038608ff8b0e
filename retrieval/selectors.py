"""Reads. Every read of documents or chunks takes the Principal and applies the ACL in SQL:
clearance >= tier AND (granted to the user OR to one of their groups OR to everyone) —
and runs inside `principal_scope`, so PostgreSQL's row-level security enforces the same
rule again underneath (retrieval/rls.py)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Literal

from django.conf import settings
from django.contrib.postgres.search import SearchQuery, SearchRank
from django.db import connection
from django.db.models import Exists, Expression, F, OuterRef, Q, QuerySet, Value
from pgvector.django import CosineDistance

from app.identity import Principal, Tier
from broker.embed import embed_query
from retrieval.models import Chunk, Document, IngestionJob, Passage
from retrieval.rls import RLS_TABLES, access_tokens, principal_scope

HNSW_OVERSAMPLE = 2  # rows fetched per row wanted from the relaxed-order scan
HNSW_EF_SEARCH_MAX = 1000  # pgvector refuses a larger hnsw.ef_search
HNSW_ITERATIVE = "relaxed_order"
RRF_K = 60  # the constant of Cormack et al.; dampens the weight of top ranks
RRF_DEPTH_FACTOR = 4
RRF_MIN_DEPTH = 20


def documents_visible_to(principal: Principal) -> QuerySet[Document]:
    """The ACL as a queryset, for composing inside a principal scope (it is lazy: evaluate
    it inside `principal_scope`, or use one of the selectors below)."""
    user_grant = Document.allowed_users.through.objects.filter(
        document_id=OuterRef("pk"), user_id=principal.user_id
    )
    group_grant = Document.allowed_groups.through.objects.filter(
        document_id=OuterRef("pk"), group_id__in=principal.group_ids
    )
    return Document.objects.filter(
        classification__lte=int(principal.clearance),
        status=Document.Status.READY,
    ).filter(Q(all_authenticated=True) | Exists(user_grant) | Exists(group_grant))


def document_get_visible(principal: Principal, document_id: int) -> Document | None:
    """The document if this principal may read it; None otherwise (callers answer 404)."""
    with principal_scope(principal):
        return documents_visible_to(principal).filter(pk=document_id).first()


def documents_list(principal: Principal) -> list[Document]:
    with principal_scope(principal):
        return list(documents_visible_to(principal).order_by("title", "id"))


def visible_document_ids(principal: Principal, document_ids: set[int]) -> set[int]:
    if not document_ids:
        return set()
    with principal_scope(principal):
        return set(
            documents_visible_to(principal).filter(pk__in=document_ids).values_list("pk", flat=True)
        )


@dataclass(frozen=True, slots=True)
class ChunkHit:
    chunk_id: int
    document_id: int
    title: str
    tier: Tier
    text: str
    score: float
    document_version: int


_HIT_FIELDS = ("id", "document_id", "tier", "text", "passage_id")
_PASSAGE_FIELDS = ("id", "distance")


def _hits(principal_rows: list[tuple[dict[str, Any], float]]) -> list[ChunkHit]:
    """Chunk rows plus their documents' titles and versions, read in one query in the same
    scope. Call inside a scope: a row whose document the principal may not read (which the
    triggers keep from happening) is dropped rather than shown."""
    documents = {
        d["pk"]: d
        for d in Document.objects.filter(
            pk__in={row["document_id"] for row, _ in principal_rows}
        ).values("pk", "title", "version")
    }
    return [
        ChunkHit(
            chunk_id=row["id"],
            document_id=row["document_id"],
            title=documents[row["document_id"]]["title"],
            tier=Tier(row["tier"]),
            text=row["text"],
            score=round(score, 4),
            document_version=documents[row["document_id"]]["version"],
        )
        for row, score in principal_rows
        if row["document_id"] in documents
    ]


def _visible_chunks(principal: Principal) -> QuerySet[Chunk]:
    """The same rule on the chunk row's own copy of its document's tier and ACL (kept in
    step by triggers): no join, so a filtered HNSW scan can test each row it visits."""
    grants = Q(all_authenticated=True) | Q(readable_user_ids__contains=[principal.user_id])
    if principal.group_ids:
        grants |= Q(readable_group_ids__overlap=list(principal.group_ids))
    return Chunk.objects.filter(grants, tier__lte=int(principal.clearance))


# The two search settings are values for a corpus of REFERENCE_CHUNKS; larger corpora
# scale them by (size / REFERENCE_CHUNKS) ** growth, from the table statistics. The size is
# what each setting is about: chunks for the exact threshold, which is compared with an
# estimate of visible chunks; passages for ef_search, since the graph holds one node per
# distinct text (where texts repeat, fewer than the chunks).
# - The exact threshold grows with the square root. Exact search costs about the same per
#   visible row at any size, while a filtered graph scan visits about (corpus / visible)
#   rows per row it keeps, so the two cross near sqrt(corpus): 5,000 visible chunks at
#   100,000, 15,800 at a million. (At a million, exact over 9,780 visible chunks took
#   21 ms and the graph scan 120 ms; over 100,000, 250 ms against 18 ms.)
# - ef_search grows with the 0.75 power: 160 at 100,000 and 900 at a million. At a million
#   passages, 600 gave recall@10 0.973 at 10% selectivity and 800 gave 0.983, 30-34 ms at
#   p95 (docs/BENCHMARKS.md; at 100,000 real-text chunks, 120 gave 0.977-0.997 from one
#   graph build to the next, hence 160 there).
REFERENCE_CHUNKS = 100_000
EXACT_THRESHOLD_GROWTH = 0.5
EF_SEARCH_GROWTH = 0.75


def _size_over_reference(table: Literal["retrieval_chunk", "retrieval_passage"]) -> str:
    """SQL for max(1, the table's row count from its statistics / REFERENCE_CHUNKS)."""
    return (
        "greatest(1.0, (SELECT reltuples FROM pg_class"  # noqa: S608 - a constant table name
        f" WHERE oid = '{table}'::regclass) / %(reference)s)"
    )


_CORPUS_SCALE = _size_over_reference("retrieval_chunk")
_GRAPH_SCALE = _size_over_reference("retrieval_passage")
_ESTIMATE = (  # the statement of `_estimate`
    "WITH stats AS ("  # noqa: S608 - built from constants only
    "  SELECT CASE WHEN c.reltuples > 0 AND d.reltuples > 0"
    "   THEN c.reltuples / d.reltuples ELSE 10 END AS per_document,"
    f"  floor(%(base)s * power({_CORPUS_SCALE}, %(growth)s))::bigint AS cap"
    "  FROM pg_class c, pg_class d"
    "  WHERE c.oid = 'retrieval_chunk'::regclass"
    "   AND d.oid = 'retrieval_document'::regclass),"
    " bound AS (SELECT per_document, cap, floor(cap / per_document)::bigint + 1 AS n"
    "  FROM stats)"
    " SELECT per_document, cap,"
    "  (SELECT count(*) FROM (SELECT 1 FROM retrieval_document_allowed_users"
    "    WHERE user_id = %(user)s LIMIT (SELECT n FROM bound)) AS u),"
    "  (SELECT count(*) FROM (SELECT 1 FROM retrieval_document_allowed_groups"
    "    WHERE group_id = ANY(%(groups)s::int[]) LIMIT (SELECT n FROM bound)) AS g),"
    "  (SELECT count(*) FROM (SELECT 1 FROM retrieval_document"
    "    WHERE all_authenticated AND classification <= %(clearance)s"
    "    LIMIT (SELECT n FROM bound)) AS o)"
    " FROM bound"
)


def _estimate(principal: Principal, base: int, growth: float) -> tuple[int, int]:
    """(about how many chunks the principal may read, the threshold `base` scaled to the
    corpus by `growth`), from one statement. See `estimated_visible_chunks`."""
    with connection.cursor() as cursor:
        # One statement (it runs in the principal's RLS scope like every other read).
        cursor.execute(
            _ESTIMATE,
            {
                "base": base,
                "growth": growth,
                "reference": REFERENCE_CHUNKS,
                "user": principal.user_id,
                "groups": list(principal.group_ids),
                "clearance": int(principal.clearance),
            },
        )
        row = cursor.fetchone()
    if row is None:
        return 0, base
    per_document, cap, user_grants, group_grants, open_documents = row
    return int((user_grants + group_grants + open_documents) * per_document), int(cap)


def estimated_visible_chunks(principal: Principal, *, cap: int) -> int:
    """About how many chunks the principal may read, from index-only counts that cost no
    policy check per row: the documents granted to the user or their groups (the grant
    tables), plus those open to every signed-in user (a partial index), times the mean
    chunks per document (table statistics). Each count stops at what `cap` chunks need:
    the plan only asks "at most `cap`?", and counting a group's 100,000 grants in full
    cost more than the search itself.

    Counting visible chunks directly costs a row-level-security check per row, which
    dominates the search itself. This over-estimates (tiers are ignored, grants overlap).
    An estimate too high picks the graph for a principal who sees little: the scan then
    comes back short (after at most hnsw.max_scan_tuples rows) and `_dense_rows` falls back
    to exact, so recall holds and only latency pays. Call inside a scope."""
    return _estimate(principal, cap, 0.0)[0]


def dense_plan(principal: Principal) -> str:
    """'exact' when the principal may see few chunks, else 'hnsw'. Call inside a scope.

    A filtered HNSW scan walks the graph until enough rows pass the ACL filter; when only a
    sliver of the corpus is visible it visits many rows per row it keeps, or gives up
    (hnsw.max_scan_tuples) with fewer than k. Exact distance over the permitted rows
    (found through the grant indexes) is then both cheaper and perfect. The threshold is
    RETRIEVAL_EXACT_THRESHOLD scaled to the corpus (see REFERENCE_CHUNKS). An estimate that
    is too high is caught by `_dense_rows`, which falls back to exact when HNSW comes back
    short."""
    threshold = settings.RETRIEVAL_EXACT_THRESHOLD
    if threshold <= 0:
        return "hnsw"
    estimate, scaled = _estimate(principal, threshold, EXACT_THRESHOLD_GROWTH)
    return "exact" if estimate <= scaled else "hnsw"


def _visible_passages(principal: Principal) -> QuerySet[Passage]:
    """Passages (distinct chunk texts, each embedded once) that some chunk the principal may
    read holds: one array overlap on the passage's own access tokens, no join, so a filtered
    HNSW scan can test each row it visits. Row-level security applies the same overlap."""
    return Passage.objects.filter(access__overlap=access_tokens(principal))


def _nearest_query(
    principal: Principal, query_embedding: list[float], depth: int, *, exact: bool
) -> QuerySet[Passage, dict[str, Any]]:
    distance = CosineDistance("embedding", query_embedding)
    # "+ 0" hides the operator from the planner: no index scan, exact ordering.
    order: Expression = distance + Value(0.0) if exact else distance
    return (
        _visible_passages(principal)
        .annotate(distance=distance, ordering=order)
        .order_by("ordering", "id")
        .values(*_PASSAGE_FIELDS)[:depth]
    )


def _nearest(
    principal: Principal, query_embedding: list[float], depth: int, *, exact: bool
) -> list[dict]:
    return list(_nearest_query(principal, query_embedding, depth, exact=exact))


def _chunks_holding(principal: Principal, passages: list[dict]) -> list[dict]:
    """For each passage row (nearest first), the first chunk the principal may read that
    holds its text, with the passage's distance: one row per distinct text. Call inside a
    scope."""
    chunks = {
        row["passage_id"]: row
        for row in _visible_chunks(principal)
        .filter(passage_id__in=[p["id"] for p in passages])
        .order_by("passage_id", "id")
        .distinct("passage_id")
        .values(*_HIT_FIELDS)
    }
    return [{**chunks[p["id"]], "distance": p["distance"]} for p in passages if p["id"] in chunks]


# The HNSW leg's session settings, set for its one query and then put back. Besides the
# iterative scan and ef_search (RETRIEVAL_HNSW_EF_SEARCH scaled to the corpus), they pin
# the plan to the graph: the choice between graph and exact is made above (`dense_plan`),
# not by the planner. PostgreSQL guesses the selectivity of the ACL's array overlap;
# guessing low, it may read the grants through a bitmap scan and sort every visible row
# (the exact plan by accident: 250 ms for 100,000 visible chunks of a million), and a
# re-analysis by autovacuum can flip it between the two from one query to the next. With
# sequential scans, bitmap scans and full sorts disabled, the graph scan (under an
# incremental sort) is the one plan left that has no disabled step.
_PLANNER_KNOBS = ("enable_seqscan", "enable_bitmapscan", "enable_sort")
_GRAPH_SETTINGS = (
    "SELECT set_config('hnsw.iterative_scan', %(iterative)s, true),"
    " set_config('hnsw.ef_search', least(%(max)s, greatest(%(wanted)s,"
    f" round(%(base)s * power({_GRAPH_SCALE}, %(growth)s))))::int::text, true), "
    + ", ".join(f"current_setting('{knob}')" for knob in _PLANNER_KNOBS)
    + ", "
    + ", ".join(f"set_config('{knob}', 'off', true)" for knob in _PLANNER_KNOBS)
)
_RESTORE_KNOBS = "SELECT " + ", ".join(f"set_config('{knob}', %s, true)" for knob in _PLANNER_KNOBS)


@contextmanager
def graph_scan(wanted: int) -> Iterator[None]:
    """Session settings for one filtered HNSW query that should yield `wanted` rows: the
    iterative scan, ef_search, and the plan pinned to the graph. The planner settings are
    put back on a clean exit (after an error, the scope's savepoint rollback does it): the
    lexical leg and the exact plan that follow need bitmap scans. Call inside a scope."""
    with connection.cursor() as cursor:
        # pgvector 0.8: keep scanning the graph until enough rows pass the ACL filter.
        cursor.execute(
            _GRAPH_SETTINGS,
            {
                "iterative": HNSW_ITERATIVE,
                "max": HNSW_EF_SEARCH_MAX,
                "wanted": wanted,
                "base": settings.RETRIEVAL_HNSW_EF_SEARCH,
                "growth": EF_SEARCH_GROWTH,
                "reference": REFERENCE_CHUNKS,
            },
        )
        row = cursor.fetchone()
        knobs = len(_PLANNER_KNOBS)
        previous = list(row[2 : 2 + knobs]) if row else ["on"] * knobs
        yield
        cursor.execute(_RESTORE_KNOBS, previous)


def _dense_rows(principal: Principal, query_embedding: list[float], depth: int) -> list[dict]:
    """The chunks of the nearest distinct texts by cosine distance, ACL-filtered, by the
    plan that keeps recall: `depth` rows whenever that many texts are visible. Call inside
    a scope."""
    return _chunks_holding(principal, _dense_passages(principal, query_embedding, depth))


def _dense_passages(principal: Principal, query_embedding: list[float], depth: int) -> list[dict]:
    if dense_plan(principal) == "exact":
        return _nearest(principal, query_embedding, depth, exact=True)
    wanted = depth * HNSW_OVERSAMPLE
    with graph_scan(wanted):
        rows = _nearest(principal, query_embedding, wanted, exact=False)
    if len(rows) < wanted:
        # The scan gave up (hnsw.max_scan_tuples) before finding enough visible rows: so
        # few are visible that the exact plan is cheap, and it finds them all.
        return _nearest(principal, query_embedding, depth, exact=True)
    # relaxed_order returns rows roughly by distance: order the oversampled set, keep depth.
    rows.sort(key=lambda r: r["distance"])
    return rows[:depth]


def _lexical_rows(principal: Principal, query: str, depth: int) -> list[dict]:
    """Chunks matching the words of the query (full text, GIN), best ts_rank_cd first."""
    tsquery = SearchQuery(query, search_type="websearch", config="english")
    return list(
        _visible_chunks(principal)
        .filter(search_vector=tsquery)
        .annotate(rank=SearchRank(F("search_vector"), tsquery, cover_density=True))
        .order_by("-rank", "id")
        .values(*_HIT_FIELDS, "rank")[:depth]
    )


def chunks_search(principal: Principal, query_embedding: list[float], *, k: int) -> list[ChunkHit]:
    """Top-k chunks by cosine similarity among those the principal may read."""
    with principal_scope(principal):
        rows = _dense_rows(principal, query_embedding, k)
        return _hits([(r, 1.0 - float(r["distance"])) for r in rows])


def hybrid_search(principal: Principal, query: str, *, k: int) -> list[ChunkHit]:
    """Dense (MiniLM + HNSW) and lexical (full text) results fused by reciprocal rank:
    exact terms (names, figures, codes) and paraphrases both find their passages. Both legs
    carry the ACL filter; the score is the fused RRF score."""
    depth = max(RRF_DEPTH_FACTOR * k, RRF_MIN_DEPTH)
    # The query may carry anything up to the asker's clearance: route it as such.
    embedding = embed_query(query, sensitivity=principal.clearance)
    with principal_scope(principal):
        dense = _dense_rows(principal, embedding, depth)
        lexical = _lexical_rows(principal, query, depth)
        # Fused per distinct text (passage): copies of one text in several documents are
        # one result, shown through the first chunk that holds it.
        fused: dict[int, float] = {}
        rows: dict[int, dict[str, Any]] = {}
        for ranking in (dense, lexical):
            ranked: list[int] = []
            for row in ranking:
                passage = row["passage_id"]
                if passage in ranked:
                    continue  # a copy of a text this leg already ranked higher
                ranked.append(passage)
                fused[passage] = fused.get(passage, 0.0) + 1.0 / (RRF_K + len(ranked))
                rows.setdefault(passage, row)
        best = sorted(fused, key=lambda passage: (-fused[passage], rows[passage]["id"]))[:k]
        return _hits([(rows[passage], fused[passage]) for passage in best])


def ingestion_job_get(principal: Principal, job_id: int) -> IngestionJob | None:
    """A job its submitter (or staff) may follow; None for anyone else (404)."""
    jobs = IngestionJob.objects.filter(pk=job_id)
    if not principal.is_staff:
        jobs = jobs.filter(created_by_id=principal.user_id)
    return jobs.first()


def database_role_is_rls_subject() -> bool:
    """True when the connected role is subject to row-level security (no superuser, no
    BYPASSRLS) and the documents, chunks and passages tables all force it."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT r.rolsuper, r.rolbypassrls,"
            " (SELECT bool_and(c.relrowsecurity AND c.relforcerowsecurity) FROM pg_class c"
            "  WHERE c.relname = ANY(%s))"
            " FROM pg_roles r WHERE r.rolname = current_user",
            [sorted(RLS_TABLES)],
        )
        row = cursor.fetchone()
    return row is not None and not row[0] and not row[1] and bool(row[2])
