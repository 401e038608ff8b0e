"""Hybrid search: dense + full text fused by reciprocal rank, the ACL on both legs."""

from __future__ import annotations

import pytest

from broker.embeddings import embed_query
from retrieval.models import Document
from retrieval.selectors import chunks_search, hybrid_search

FORECAST = "Q3 2026 Revenue Forecast"


@pytest.mark.usefixtures("demo")
def test_exact_names_are_found_by_the_lexical_leg_where_dense_alone_misses(principal_of):
    alice = principal_of("alice")
    query = "Sofia Lindqvist"  # a name: embeddings know nothing of it, full text does
    dense = [h.title for h in chunks_search(alice, embed_query(query), k=3)]
    hybrid = hybrid_search(alice, query, k=3)
    assert FORECAST not in dense
    assert hybrid[0].title == FORECAST
    assert "Sofia Lindqvist" in hybrid[0].text


@pytest.mark.usefixtures("demo")
def test_lexical_leg_applies_the_acl(principal_of):
    forecast = Document.objects.get(title=FORECAST)
    for username in ("bob", "admin"):  # engineering; staff without finance grants
        hits = hybrid_search(principal_of(username), "Halvorsen Logistics revenue", k=20)
        assert forecast.pk not in {h.document_id for h in hits}
    assert forecast.pk in {
        h.document_id for h in hybrid_search(principal_of("alice"), "Halvorsen", k=5)
    }


@pytest.mark.usefixtures("demo")
def test_fused_scores_are_descending_and_k_is_respected(principal_of):
    hits = hybrid_search(principal_of("carol"), "revenue forecast margin", k=7)
    assert len(hits) == 7
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert len({h.chunk_id for h in hits}) == 7


@pytest.mark.usefixtures("demo")
def test_query_with_no_lexical_match_still_returns_dense_results(principal_of):
    hits = hybrid_search(principal_of("bob"), "zzzqqq xyzzy", k=3)
    assert len(hits) == 3


@pytest.mark.usefixtures("demo")
def test_hybrid_search_query_count_is_constant(principal_of, django_assert_num_queries):
    principal = principal_of("carol")
    hybrid_search(principal, "warm up", k=1)  # the model loads once per process
    for k in (1, 10):
        # savepoint, RLS scope on, plan estimate (grants and open documents in one
        # statement), dense (nearest passages, then the chunks that hold them), lexical, hit
        # documents, scope restored, release
        with django_assert_num_queries(9):
            hybrid_search(principal, "travel per diem hotel", k=k)


@pytest.mark.usefixtures("demo")
def test_dense_plan_is_exact_below_the_threshold_and_hnsw_above(principal_of, settings):

    from retrieval.rls import principal_scope
    from retrieval.selectors import _visible_chunks, dense_plan, estimated_visible_chunks

    # No ANALYZE here: only a table's owner may analyse it, and the code under test runs as
    # the application role (PostgreSQL skips the command with a warning). The planner works
    # from default statistics, as on a freshly loaded database before autovacuum runs.
    carol, bob = principal_of("carol"), principal_of("bob")
    estimates = {}
    for principal in (carol, bob):
        with principal_scope(principal):
            visible = _visible_chunks(principal).count()
            estimates[principal.username] = estimated_visible_chunks(principal, cap=10_000)
        # An estimate may be high (it only costs an HNSW scan), never far too low.
        assert estimates[principal.username] >= visible * 0.5, (principal.username, visible)
    assert estimates["bob"] < estimates["carol"]
    settings.RETRIEVAL_EXACT_THRESHOLD = estimates["bob"]  # bob at the threshold, carol above
    with principal_scope(bob):
        assert dense_plan(bob) == "exact"
    with principal_scope(carol):
        assert dense_plan(carol) == "hnsw"
    settings.RETRIEVAL_EXACT_THRESHOLD = 0
    with principal_scope(bob):
        assert dense_plan(bob) == "hnsw"


@pytest.mark.usefixtures("demo")
def test_the_plan_estimate_stops_counting_at_the_threshold(principal_of):
    """The plan only asks "more than the threshold?": counting a big group's grants in
    full cost 30 ms at 1M chunks. With a cap of one chunk, each of the three counts stops
    after one document, however many the group is granted."""
    import dataclasses

    from django.contrib.auth.models import Group
    from django.db import connection

    from retrieval.models import Chunk, Document
    from retrieval.rls import principal_scope
    from retrieval.selectors import estimated_visible_chunks

    everything = Group.objects.create(name="granted-everything")
    for document in Document.objects.all():
        document.allowed_groups.add(everything)
    with connection.cursor() as cursor:  # the statistics the estimate reads
        cursor.execute(
            "SELECT CASE WHEN c.reltuples > 0 AND d.reltuples > 0"
            " THEN c.reltuples / d.reltuples ELSE 10 END FROM pg_class c, pg_class d"
            " WHERE c.relname = 'retrieval_chunk' AND d.relname = 'retrieval_document'"
        )
        (per_document,) = cursor.fetchone()
    principal = dataclasses.replace(principal_of("bob"), group_ids=(everything.pk,))
    with principal_scope(principal):
        full = estimated_visible_chunks(principal, cap=10_000)
        capped = estimated_visible_chunks(principal, cap=1)
    assert full >= Chunk.objects.count()
    assert 1 < capped <= 3 * per_document + 1


@pytest.mark.usefixtures("demo")
def test_exact_and_hnsw_plans_agree_on_a_small_corpus(principal_of, settings):
    carol = principal_of("carol")
    vector = embed_query("How are vendor payments approved?")
    settings.RETRIEVAL_EXACT_THRESHOLD = 100_000
    exact = [h.chunk_id for h in chunks_search(carol, vector, k=5)]
    settings.RETRIEVAL_EXACT_THRESHOLD = 0
    approximate = [h.chunk_id for h in chunks_search(carol, vector, k=5)]
    assert exact == approximate
    assert len(exact) == 5


@pytest.mark.django_db
def test_the_indexes_every_search_reads_keep_no_pending_list():
    """A GIN pending list is scanned in full by every search until vacuum merges it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname, c.reloptions FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid"
            " WHERE i.indrelid IN ('retrieval_chunk'::regclass, 'retrieval_passage'::regclass)"
            " AND c.relam = (SELECT oid FROM pg_am WHERE amname = 'gin')"
        )
        options = dict(cursor.fetchall())
    assert set(options) == {
        "chunk_search_gin",
        "chunk_readable_groups_gin",
        "chunk_readable_users_gin",
        "passage_access_gin",
    }
    assert all("fastupdate=off" in (value or []) for value in options.values()), options


@pytest.mark.django_db
def test_the_passage_graph_is_built_with_m_32():
    """m 24 left some queries of the 1M bench in a pocket of the graph (recall@10 0.978 at
    10% visible); m 32 got out of it (0.993; docs/BENCHMARKS.md). Migration 0010 builds it."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.reloptions FROM pg_class c WHERE c.relname = 'passage_embedding_hnsw'"
        )
        (options,) = cursor.fetchone()
    assert sorted(options) == ["ef_construction=128", "m=32"]


@pytest.mark.usefixtures("demo")
def test_the_graph_leg_runs_on_the_hnsw_index_whatever_the_planner_would_pick(principal_of):
    """The plan (exact or graph) is the application's choice, not the planner's. Left to
    itself, the planner reads a small or seemingly selective table through a scan and sorts
    every visible row: on the 1M bench, 10% selectivity flipped to that plan after an
    autovacuum (250 ms instead of 18). Inside `graph_scan` the HNSW index is the one plan
    left, and afterwards the planner's settings are back for the lexical leg."""
    from django.db import connection

    from retrieval.rls import principal_scope
    from retrieval.selectors import _nearest_query, graph_scan

    carol = principal_of("carol")
    vector = embed_query("How are vendor payments approved?")
    knobs = (
        "SELECT current_setting('enable_seqscan'), current_setting('enable_bitmapscan'),"
        " current_setting('enable_sort')"
    )
    with principal_scope(carol), connection.cursor() as cursor:
        with graph_scan(20):
            pinned = _nearest_query(carol, vector, 20, exact=False).explain()
            cursor.execute(knobs)
            inside = cursor.fetchone()
        cursor.execute(knobs)
        after = cursor.fetchone()
    assert "Index Scan using passage_embedding_hnsw" in pinned
    assert inside == ("off", "off", "off")  # no other plan is left to the planner
    assert after == ("on", "on", "on")


@pytest.mark.django_db(transaction=True)
def test_the_exact_threshold_and_ef_search_grow_with_the_corpus(
    demo, principal_of, settings, monkeypatch
):
    """Both settings are values for REFERENCE_CHUNKS chunks (ef_search: passages, which
    here are as many). On a corpus four times that size the exact threshold doubles (square
    root) and ef_search grows 4 ** EF_SEARCH_GROWTH times."""
    from django.db import connection

    from retrieval import selectors
    from retrieval.rls import principal_scope
    from tests.retrieval.statistics import analysed_chunks_and_passages

    chunks, passages = analysed_chunks_and_passages()
    assert chunks == passages > 0  # no text repeats in the demo corpus
    bob = principal_of("bob")

    def plan_and_ef_search() -> tuple[str, int]:
        with principal_scope(bob):
            plan = selectors.dense_plan(bob)
            with selectors.graph_scan(2), connection.cursor() as cursor:
                cursor.execute("SELECT current_setting('hnsw.ef_search')::int")
                return plan, cursor.fetchone()[0]

    with principal_scope(bob):
        estimate = selectors.estimated_visible_chunks(bob, cap=10**6)
    assert estimate >= 2
    settings.RETRIEVAL_EXACT_THRESHOLD = (estimate + 1) // 2  # under the estimate, twice over
    settings.RETRIEVAL_HNSW_EF_SEARCH = 120
    assert plan_and_ef_search() == ("hnsw", 120)  # the demo corpus is below the reference
    monkeypatch.setattr(selectors, "REFERENCE_CHUNKS", chunks / 4)
    assert plan_and_ef_search() == ("exact", round(120 * 4**selectors.EF_SEARCH_GROWTH))
