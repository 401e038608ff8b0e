"""Filtered vector search under ACLs: recall, rows returned and latency per strategy.

    make bench-retrieval            # 100k synthetic chunks (SIZE=... to change)

Builds a scratch database `bench_retrieval` on the configured server, migrates it with the
project's own schema (RLS included), loads clustered synthetic 384-d vectors with an ACL
spread (a group per selectivity: 0.1%, 1%, 10%, 100% of documents), and runs the same
queries through four strategies, all in one process and one run:

- naive:     HNSW with the ACL as a post-filter (pgvector iterative scan off)
- iterative: HNSW with `hnsw.iterative_scan = relaxed_order`
- exact:     exact distance over the permitted rows
- adaptive:  what the application does (retrieval.selectors.chunks_search)

Recall@k is measured against `exact`. Results: bench/results/retrieval.json and a markdown
table (bench/results/retrieval.md) to paste into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")

BENCH_DB = "bench_retrieval"
DIM = 384
CHUNKS_PER_DOC = 10
CLUSTERS = 64
SELECTIVITIES = (0.001, 0.01, 0.1, 1.0)
K = 10
QUERIES = int(os.environ.get("QUERIES", "40"))
SIZE = int(os.environ.get("SIZE", "100000"))
SEED = 20261125


@dataclass
class Row:
    strategy: str
    selectivity: float
    visible_chunks: int
    recall_at_k: float
    min_rows: int
    mean_rows: float
    p50_ms: float
    p95_ms: float


def _configure_database() -> None:
    import django
    from django.conf import settings

    settings.DATABASES["default"]["NAME"] = BENCH_DB  # before any connection opens
    django.setup()


def _recreate_database() -> None:
    from django.db import connection

    # The maintenance connection Django itself uses to create test databases.
    with connection._nodb_cursor() as cursor:
        cursor.execute(f"DROP DATABASE IF EXISTS {BENCH_DB}")
        cursor.execute(f"CREATE DATABASE {BENCH_DB}")


def _vectors(rng: np.random.Generator, centers: np.ndarray, n: int, noise: float) -> np.ndarray:
    labels = rng.integers(0, len(centers), size=n)
    points = centers[labels] + rng.normal(scale=noise, size=(n, DIM)).astype(np.float32)
    return points / np.linalg.norm(points, axis=1, keepdims=True)


def _load(size: int) -> dict[float, int]:
    """Load documents, grants and chunks; return the group id per selectivity."""
    from django.contrib.auth.models import Group
    from django.db import connection
    from pgvector.psycopg import register_vector

    rng = np.random.default_rng(SEED)
    centers = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32)
    groups = {s: Group.objects.create(name=f"bench-{s}").pk for s in SELECTIVITIES}
    documents = size // CHUNKS_PER_DOC
    with connection.cursor() as cursor:
        raw = cursor.connection
        register_vector(raw)
        # The owner may lift RLS for the bulk load (COPY refuses tables under RLS).
        for table in ("retrieval_document", "retrieval_chunk"):
            cursor.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        with raw.cursor().copy(
            "COPY retrieval_document (id, title, classification, all_authenticated, source_name,"
            " text, content_sha256, version, status, error, created_at, updated_at)"
            " FROM STDIN"
        ) as copy:
            for doc in range(1, documents + 1):
                copy.write_row(
                    (doc, f"doc {doc}", 0, False, "", "", "", 1, "ready", "",
                     "2026-11-25T00:00:00Z", "2026-11-25T00:00:00Z")
                )  # fmt: skip
        with raw.cursor().copy(
            "COPY retrieval_document_allowed_groups (document_id, group_id) FROM STDIN"
        ) as copy:
            for doc in range(1, documents + 1):
                for selectivity, group in groups.items():
                    if selectivity == 1.0 or rng.random() < selectivity:
                        copy.write_row((doc, group))
        vectors = _vectors(rng, centers, documents * CHUNKS_PER_DOC, noise=0.35)
        with raw.cursor().copy(
            "COPY retrieval_chunk (id, document_id, position, text, embedding)"
            " FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int8", "int4", "text", "vector"])
            for i, vector in enumerate(vectors):
                copy.write_row((i + 1, i // CHUNKS_PER_DOC + 1, i % CHUNKS_PER_DOC, "", vector))
        for table in ("retrieval_document", "retrieval_chunk"):
            cursor.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
        cursor.execute("ANALYZE retrieval_document, retrieval_document_allowed_groups")
    return groups


def _build_index() -> tuple[float, int]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SET maintenance_work_mem = '512MB'")
        started = time.perf_counter()
        cursor.execute(
            "CREATE INDEX chunk_embedding_hnsw ON retrieval_chunk"
            " USING hnsw (embedding vector_cosine_ops) WITH (m = 16, ef_construction = 64)"
        )
        seconds = time.perf_counter() - started
        cursor.execute("ANALYZE retrieval_chunk")
        cursor.execute("SELECT pg_relation_size('chunk_embedding_hnsw')")
        size = cursor.fetchone()[0]
    return seconds, size


def _strategies():
    from django.conf import settings
    from django.db import connection
    from pgvector.django import CosineDistance

    from retrieval.rls import principal_scope
    from retrieval.selectors import _visible_chunks, chunks_search

    def naive(principal, vector):
        with principal_scope(principal), connection.cursor() as cursor:
            cursor.execute("SET LOCAL hnsw.iterative_scan = off")
            cursor.execute("SET LOCAL hnsw.ef_search = 40")
            return list(
                _visible_chunks(principal)
                .annotate(d=CosineDistance("embedding", vector))
                .order_by("d")
                .values_list("id", flat=True)[:K]
            )

    def through_selector(threshold: int):
        def run(principal, vector):
            settings.RETRIEVAL_EXACT_THRESHOLD = threshold
            return [h.chunk_id for h in chunks_search(principal, vector.tolist(), k=K)]

        return run

    return {
        "naive": naive,
        "iterative": through_selector(0),
        "exact": through_selector(10**12),
        "adaptive": through_selector(int(os.environ.get("EXACT_THRESHOLD", "5000"))),
    }


def _principal(group_id: int):
    from app.identity import Principal, Tier

    return Principal(
        user_id=0,
        username="bench",
        groups=(),
        group_ids=(group_id,),
        clearance=Tier.RESTRICTED,
        scopes=frozenset({"search"}),
        request_id="bench",
    )


def _visible(principal) -> int:
    from retrieval.rls import principal_scope
    from retrieval.selectors import _visible_chunks

    with principal_scope(principal):
        return _visible_chunks(principal).count()


def main() -> int:
    _configure_database()
    _recreate_database()
    from django.core.management import call_command
    from django.db import connection

    call_command("migrate", verbosity=0)
    started = time.perf_counter()
    with connection.cursor() as cursor:
        # Build the graph once after the load, not row by row during it.
        cursor.execute("DROP INDEX IF EXISTS chunk_embedding_hnsw")
    groups = _load(SIZE)
    load_s = time.perf_counter() - started
    build_s, index_bytes = _build_index()
    print(f"loaded {SIZE} chunks in {load_s:.1f}s; HNSW built in {build_s:.1f}s "
          f"({index_bytes / 2**20:.0f} MiB)", flush=True)  # fmt: skip

    rng = np.random.default_rng(SEED + 1)
    centers = np.random.default_rng(SEED).normal(size=(CLUSTERS, DIM)).astype(np.float32)
    queries = _vectors(rng, centers, QUERIES, noise=0.35)
    strategies = _strategies()
    rows: list[Row] = []
    for selectivity, group in groups.items():
        principal = _principal(group)
        visible = _visible(principal)
        truth = [strategies["exact"](principal, q) for q in queries]
        for name, run in strategies.items():
            run(principal, queries[0])  # warm up
            latencies, recalls, counts = [], [], []
            for query, expected in zip(queries, truth, strict=True):
                started = time.perf_counter()
                got = run(principal, query)
                latencies.append((time.perf_counter() - started) * 1000)
                counts.append(len(got))
                want = set(expected[:K])
                recalls.append(len(want & set(got)) / len(want) if want else 1.0)
            latencies.sort()
            rows.append(
                Row(
                    strategy=name,
                    selectivity=selectivity,
                    visible_chunks=visible,
                    recall_at_k=round(statistics.mean(recalls), 4),
                    min_rows=min(counts),
                    mean_rows=round(statistics.mean(counts), 2),
                    p50_ms=round(statistics.median(latencies), 2),
                    p95_ms=round(latencies[int(0.95 * (len(latencies) - 1))], 2),
                )
            )
            print(json.dumps(asdict(rows[-1])), flush=True)

    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    result = {
        "size": SIZE,
        "queries": QUERIES,
        "k": K,
        "load_s": round(load_s, 1),
        "index_build_s": round(build_s, 1),
        "index_mib": round(index_bytes / 2**20, 1),
        "rows": [asdict(r) for r in rows],
    }
    (out / "retrieval.json").write_text(json.dumps(result, indent=2))
    table = [
        f"Synthetic clustered 384-d vectors, {SIZE:,} chunks, {QUERIES} queries, k={K}; "
        f"HNSW (m=16, ef_construction=64) built in {build_s:.1f} s, {index_bytes / 2**20:.0f} MiB.",
        "",
        "| selectivity | visible chunks | strategy | recall@10 | min rows | p50 ms | p95 ms |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {r.selectivity:.1%} | {r.visible_chunks:,} | {r.strategy} | {r.recall_at_k:.3f} "
            f"| {r.min_rows} | {r.p50_ms:.1f} | {r.p95_ms:.1f} |"
            for r in rows
        ),
    ]
    (out / "retrieval.md").write_text("\n".join(table) + "\n")
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
