"""Filtered vector search under ACLs: recall, rows returned and latency per strategy.

    make bench-retrieval                      # synthetic 100k chunks, real text 20k
    SIZE=1000000 CORPUS=synthetic RESULTS=retrieval-1m make bench-retrieval
    REUSE=1 SIZE=1000000 CORPUS=synthetic make bench-retrieval   # queries only, same graph

Builds a scratch database `bench_retrieval` on the configured server, migrates it with the
project's own schema (RLS included) and, for each corpus, loads 384-d vectors with an ACL
spread (a group per selectivity: 0.1%, 1%, 10%, 100% of documents) and runs the same
queries through four strategies, all in one process and one run. Two corpora, since
recall on either alone misleads:

- synthetic: clustered random vectors (64 clusters), 10 chunks per document;
- text: real text found offline on this machine (manual pages under /usr/share/man and
  the docstrings of Python's standard library), split by the application's own splitter
  and embedded with its MiniLM model; a document is a manual page or a module; queries
  are the opening words of random chunks. Embeddings are cached under var/bench-cache/
  (BENCH_CACHE), per shard of 2,000 chunks. `PREPARE_ONLY=1` builds the corpora (fills
  the cache) and stops: run it at low priority to embed a large TEXT_SIZE in the
  background, then time the search on a quiet machine.

- naive:     HNSW with the ACL as a post-filter (pgvector iterative scan off)
- iterative: the application's graph leg on its own (`hnsw.iterative_scan =
             relaxed_order`, the plan pinned to the HNSW index), whatever the selectivity
- exact:     exact distance over the permitted rows
- adaptive:  what the application does (retrieval.selectors.chunks_search)

Recall@k is measured against `exact`, by distance: a returned chunk counts as found when
it is no further from the query than exact's k-th row. Chunks with equal vectors tie (the
real-text corpus repeats text: the same docstring in many modules, the same page in two
manual sections), and exact search keeps an arbitrary k of the tied rows; matching its ids
would score that choice, not the search. The id match is reported beside it. Results:
bench/results/retrieval.json and a markdown table (bench/results/retrieval.md) to paste
into docs/BENCHMARKS.md.
"""

from __future__ import annotations

import ast
import gzip
import hashlib
import json
import os
import re
import statistics
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import machine  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")

# The scratch database; another name keeps a previous run's database (and graph) for REUSE.
BENCH_DB = os.environ.get("BENCH_DB", "bench_retrieval")
if not re.fullmatch(r"[a-z_][a-z0-9_]*", BENCH_DB):
    raise SystemExit(f"BENCH_DB must be a plain lower-case identifier, not {BENCH_DB!r}")
DIM = 384
CHUNKS_PER_DOC = 10
CLUSTERS = 64
SELECTIVITIES = (0.001, 0.01, 0.1, 1.0)
K = 10
QUERIES = int(os.environ.get("QUERIES", "40"))
SIZE = int(os.environ.get("SIZE", "100000"))
# MiniLM on this 2-core CPU embedded 64 chunks in 17 s with the machine loaded (load 9): a
# first run of 20k chunks is long (then cached); TEXT_SIZE=100000 for the full size.
TEXT_SIZE = int(os.environ.get("TEXT_SIZE", str(min(SIZE, 20_000))))
CORPORA = os.environ.get("CORPUS", "synthetic,text").split(",")
SEED = 20261125
CACHE = Path(os.environ.get("BENCH_CACHE", ROOT / "var" / "bench-cache"))
# The graph's parameters: by default the application's own index (retrieval/models.py,
# read once Django is set up); other values are for experiments, e.g.
# HNSW_M=16 HNSW_EF_CONSTRUCTION=64 make bench-retrieval.
HNSW_M = int(os.environ.get("HNSW_M", "0"))
HNSW_EF_CONSTRUCTION = int(os.environ.get("HNSW_EF_CONSTRUCTION", "0"))
# Results go to bench/results/<RESULTS>.json and .md, so a 1M run keeps the 100k one.
RESULTS = os.environ.get("RESULTS", "retrieval")
# REUSE=1: measure on the database and graph the previous run built (same SIZE and CORPUS,
# one corpus), instead of dropping them: a million-passage graph takes 20-80 minutes to build.
REUSE = os.environ.get("REUSE") == "1"


@dataclass
class Corpus:
    name: str
    description: str
    vectors: np.ndarray  # (chunks, DIM), unit length
    doc_of: np.ndarray  # the 1-based document id of each chunk
    queries: np.ndarray


@dataclass
class Row:
    corpus: str
    strategy: str
    selectivity: float
    visible_chunks: int
    recall_at_k: float
    id_recall_at_k: float
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


def synthetic_corpus(size: int) -> Corpus:
    rng = np.random.default_rng(SEED)
    centers = rng.normal(size=(CLUSTERS, DIM)).astype(np.float32)
    vectors = _vectors(rng, centers, size, noise=0.35)
    queries = _vectors(np.random.default_rng(SEED + 1), centers, QUERIES, noise=0.35)
    return Corpus(
        name="synthetic",
        description=f"synthetic clustered 384-d vectors ({CLUSTERS} clusters), "
        f"{CHUNKS_PER_DOC} chunks per document",
        vectors=vectors,
        doc_of=np.arange(size) // CHUNKS_PER_DOC + 1,
        queries=queries,
    )


_ROFF_ESCAPES = re.compile(r"\\f[BIRP1-4]|\\f\(..|\\\(..|\\[&|^%]|\\s[+-]?\d")


def _man_page_text(raw: str) -> str:
    """Manual-page source to plain text: drop comments and request names, keep their words."""
    lines = []
    for line in raw.splitlines():
        if line.startswith(('.\\"', "'\\\"")):
            continue
        if line.startswith((".", "'")):
            line = line.split(" ", 1)[1] if " " in line else ""
        line = _ROFF_ESCAPES.sub("", line).replace("\\-", "-").replace('"', "")
        lines.append(line)
    return "\n".join(lines)


def _offline_sources() -> list[Path]:
    """Every manual page and standard-library module on this machine, in a fixed order."""
    pages = sorted(Path("/usr/share/man").glob("man[1-8]/*.gz"))
    modules = sorted(Path(sysconfig.get_paths()["stdlib"]).rglob("*.py"))
    return pages + modules


def _source_text(path: Path) -> str:
    """A manual page as plain text, or a module's docstrings; "" if unreadable."""
    try:
        if path.suffix == ".gz":
            return _man_page_text(gzip.decompress(path.read_bytes()).decode())
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError, EOFError):
        return ""
    kinds = ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef
    docs = [ast.get_docstring(node) or "" for node in ast.walk(tree) if isinstance(node, kinds)]
    return "\n\n".join(d for d in docs if d)


SHARD = 2_000


def _embedded(chunks: list[str], embed: Callable[[list[str]], list[list[float]]]) -> np.ndarray:
    """MiniLM vectors for the chunks, cached per shard of SHARD chunks (keyed by their
    text) under var/bench-cache: embedding 100k chunks takes hours on 2 cores, so an
    interrupted run keeps what it finished and a larger TEXT_SIZE reuses the smaller."""
    parts = []
    started = time.perf_counter()
    for start in range(0, len(chunks), SHARD):
        shard = chunks[start : start + SHARD]
        key = hashlib.sha256("\x00".join(shard).encode()).hexdigest()[:16]
        cache = CACHE / f"text-shard-{len(shard)}-{key}.npy"
        if not cache.exists():
            vectors = np.asarray(embed(shard), dtype=np.float32)
            CACHE.mkdir(parents=True, exist_ok=True)
            np.save(cache, vectors)
            done = start + len(shard)
            print(f"embedded {done}/{len(chunks)} chunks "
                  f"({time.perf_counter() - started:.0f}s)", flush=True)  # fmt: skip
        parts.append(np.load(cache))
    return np.concatenate(parts)


def text_corpus(size: int) -> Corpus:
    from broker.embeddings import embed_query, embed_texts
    from retrieval.services import split_text

    rng = np.random.default_rng(SEED)
    sources = _offline_sources()
    chunks: list[str] = []
    doc_of: list[int] = []
    documents = 0
    for index in rng.permutation(len(sources)):  # read in a seeded random order until full
        text = _source_text(sources[index])
        if len(text) < 200:
            continue
        documents += 1
        for piece in split_text(text):
            chunks.append(piece)
            doc_of.append(documents)
        if len(chunks) >= size:
            break
    chunks, doc_of = chunks[:size], doc_of[:size]
    vectors = _embedded(chunks, embed_texts)
    picks = rng.choice(len(chunks), size=QUERIES, replace=False)
    queries = np.asarray(
        [embed_query(" ".join(chunks[i].split()[:12])) for i in picks], dtype=np.float32
    )
    distinct = len(set(map(bytes, vectors)))
    return Corpus(
        name="text",
        description=f"real text embedded with MiniLM ({doc_of[-1]:,} manual pages and "
        f"standard-library modules, split by the application's splitter; {distinct:,} "
        "distinct vectors)",
        vectors=vectors,
        doc_of=np.asarray(doc_of),
        queries=queries,
    )


TABLES = ("retrieval_document", "retrieval_passage", "retrieval_chunk")


def _load(corpus: Corpus) -> dict[float, int]:
    """Load documents, grants and chunks; return the group id per selectivity."""
    from django.contrib.auth.models import Group
    from django.db import connection
    from pgvector.psycopg import register_vector

    rng = np.random.default_rng(SEED)
    groups = {
        s: Group.objects.get_or_create(name=f"bench-{corpus.name}-{s}")[0].pk for s in SELECTIVITIES
    }
    documents = int(corpus.doc_of.max())
    with connection.cursor() as cursor:
        raw = cursor.connection
        register_vector(raw)
        cursor.execute(
            "TRUNCATE retrieval_chunk, retrieval_passage, retrieval_document_allowed_groups,"
            " retrieval_document CASCADE"
        )
        # The owner may lift RLS for the bulk load (COPY refuses tables under RLS).
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} DISABLE ROW LEVEL SECURITY")
        with raw.cursor().copy(
            "COPY retrieval_document (id, title, classification, all_authenticated, source_name,"
            " text, content_sha256, version, status, error, created_at, updated_at,"
            " pii_kinds)"
            " FROM STDIN"
        ) as copy:
            for doc in range(1, documents + 1):
                copy.write_row(
                    (doc, f"doc {doc}", 0, False, "", "", "", 1, "ready", "",
                     "2026-11-25T00:00:00Z", "2026-11-25T00:00:00Z", "{}")
                )  # fmt: skip
        with raw.cursor().copy(
            "COPY retrieval_document_allowed_groups (document_id, group_id) FROM STDIN"
        ) as copy:
            for doc in range(1, documents + 1):
                for selectivity, group in groups.items():
                    if selectivity == 1.0 or rng.random() < selectivity:
                        copy.write_row((doc, group))
        # One passage per distinct vector, as the application keeps one per distinct text,
        # numbered (and so inserted, and the graph built) in the order the chunks first use
        # them, as ingestion would. np.unique sorts them; a graph built over vectors sorted
        # by their first coordinate came out far worse (recall@10 0.957 against 0.998 at
        # 100% on the synthetic corpus).
        distinct, first, passage_of = np.unique(
            corpus.vectors, axis=0, return_index=True, return_inverse=True
        )
        order = np.argsort(first)
        distinct = distinct[order]
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        passage_of = rank[passage_of.reshape(-1)]
        with raw.cursor().copy(
            "COPY retrieval_passage (id, digest, embedding, access) FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "text", "vector", "text[]"])
            for j, vector in enumerate(distinct):
                copy.write_row((j + 1, f"bench-{j + 1}", vector, ["*"]))
        # The chunk triggers copy each document's tier and grants onto its chunks, and the
        # union of those onto the chunks' passages.
        with raw.cursor().copy(
            "COPY retrieval_chunk (id, document_id, position, text, passage_id)"
            " FROM STDIN WITH (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["int8", "int8", "int4", "text", "int8"])
            for i, (passage, doc) in enumerate(zip(passage_of, corpus.doc_of, strict=True)):
                copy.write_row((i + 1, int(doc), i, "", int(passage) + 1))
        for table in TABLES:
            cursor.execute(f"ALTER TABLE {table} ENABLE ROW LEVEL SECURITY")
    with connection.cursor() as cursor:  # outside the load's transaction
        cursor.execute("VACUUM ANALYZE retrieval_passage")
        cursor.execute("ANALYZE retrieval_document, retrieval_document_allowed_groups")
    return groups


def graph_parameters() -> tuple[int, int]:
    """(m, ef_construction): HNSW_M / HNSW_EF_CONSTRUCTION, else the application's index."""
    from retrieval.models import Passage

    (index,) = [i for i in Passage._meta.indexes if i.name == "passage_embedding_hnsw"]
    return HNSW_M or index.m, HNSW_EF_CONSTRUCTION or index.ef_construction


@dataclass(frozen=True)
class Build:
    seconds: float
    index_bytes: int
    notices: tuple[str, ...]  # pgvector's, e.g. the graph no longer fitting in memory


def _build_index() -> Build:
    from django.db import connection

    from retrieval.rls import privileged_scope

    m, ef_construction = graph_parameters()

    # Counted with row-level security lifted: under it, with no principal, the table looks
    # empty, and the build got the 512 MB floor (it spilled after ~200k of 1M passages).
    with privileged_scope("bench: size the graph build"), connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM retrieval_passage")
        rows = cursor.fetchone()[0]
    if not rows:
        raise SystemExit("no passages to index: the load did not land")
    notices: list[str] = []
    with connection.cursor() as cursor:
        # The graph must fit in maintenance_work_mem or the build slows to a crawl (pgvector
        # then inserts into the index on disk): about 4.7 KiB per 384-d passage at m 24, so
        # give m / 4 KiB (6 at m 24, 8 at m 32). One parallel worker on a 2-core machine.
        cursor.execute(f"SET maintenance_work_mem = '{max(512, rows * m // 4 // 1024)}MB'")
        cursor.execute("SET max_parallel_maintenance_workers = 1")
        raw = cursor.connection

        def keep(diagnostic) -> None:
            notices.append(diagnostic.message_primary or "")

        raw.add_notice_handler(keep)
        try:
            started = time.perf_counter()
            cursor.execute(
                "CREATE INDEX passage_embedding_hnsw ON retrieval_passage"
                f" USING hnsw (embedding vector_cosine_ops) WITH (m = {m},"
                f" ef_construction = {ef_construction})"
            )
            seconds = time.perf_counter() - started
        finally:
            raw.remove_notice_handler(keep)
        cursor.execute("ANALYZE retrieval_chunk, retrieval_passage")
        cursor.execute("SELECT pg_relation_size('passage_embedding_hnsw')")
        size = cursor.fetchone()[0]
    for notice in notices:
        # "hnsw graph no longer fits into maintenance_work_mem after N tuples": the build
        # time measured is not the in-memory build's.
        print(f"index build: {notice}", file=sys.stderr)
    return Build(seconds, size, tuple(notices))


def _strategies():
    from django.conf import settings
    from django.db import connection
    from pgvector.django import CosineDistance

    from retrieval.rls import principal_scope
    from retrieval.selectors import (
        _PASSAGE_FIELDS,
        _chunks_holding,
        _visible_passages,
        chunks_search,
    )

    def naive(principal, vector):
        with principal_scope(principal), connection.cursor() as cursor:
            cursor.execute("SET LOCAL hnsw.iterative_scan = off")
            cursor.execute("SET LOCAL hnsw.ef_search = 40")
            passages = list(
                _visible_passages(principal)
                .annotate(distance=CosineDistance("embedding", vector))
                .order_by("distance")
                .values(*_PASSAGE_FIELDS)[:K]
            )
            return [row["id"] for row in _chunks_holding(principal, passages)]

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


def _load_and_build(corpus: Corpus) -> tuple[dict[float, int], float, Build]:
    from django.db import connection

    started = time.perf_counter()
    with connection.cursor() as cursor:
        # Build the graph once after the load, not row by row during it.
        cursor.execute("DROP INDEX IF EXISTS passage_embedding_hnsw")
    groups = _load(corpus)
    load_s = time.perf_counter() - started
    return groups, load_s, _build_index()


def _reused(corpus: Corpus) -> tuple[dict[float, int], int]:
    """The groups and graph size of the previous run's database, checked against `corpus`."""
    from django.contrib.auth.models import Group
    from django.db import connection

    from retrieval.rls import privileged_scope

    with privileged_scope("bench: the size of the reused corpus"), connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM retrieval_chunk")
        chunks = cursor.fetchone()[0]
        cursor.execute("SELECT pg_relation_size('passage_embedding_hnsw')")
        index_bytes = cursor.fetchone()[0]
    if chunks != len(corpus.vectors):
        raise SystemExit(
            f"REUSE=1: the database holds {chunks:,} chunks, not {len(corpus.vectors):,}"
        )
    groups = {s: Group.objects.get(name=f"bench-{corpus.name}-{s}").pk for s in SELECTIVITIES}
    return groups, index_bytes


def _search_settings(principal) -> dict:
    """The exact-plan threshold and ef_search the application uses on this corpus."""
    from django.conf import settings
    from django.db import connection

    from retrieval.rls import principal_scope
    from retrieval.selectors import EXACT_THRESHOLD_GROWTH, _estimate, graph_scan

    with principal_scope(principal):
        base = settings.RETRIEVAL_EXACT_THRESHOLD
        _, threshold = _estimate(principal, base, EXACT_THRESHOLD_GROWTH)
        with graph_scan(2 * K), connection.cursor() as cursor:
            cursor.execute("SELECT current_setting('hnsw.ef_search')::int")
            ef_search = cursor.fetchone()[0]
    return {"exact_threshold": threshold, "ef_search": ef_search}


TIE = 1e-6  # cosine distances this close are equal (the same vector, float32 rounding)


def _recall(corpus: Corpus, query: np.ndarray, expected: list[int], got: list[int]) -> float:
    """The share of `expected` (exact's top k) matched by rows of `got` at no greater
    distance: a tied row counts, whichever of the tied ids it is. Chunk i has id i + 1."""
    if not expected or not got:
        return 0.0 if expected else 1.0

    def distances(ids: list[int]) -> np.ndarray:
        rows = corpus.vectors[np.asarray(ids, dtype=np.int64) - 1]
        return 1.0 - rows @ query / (np.linalg.norm(rows, axis=1) * np.linalg.norm(query))

    kth = float(distances(expected).max())
    found = int((distances(got[: len(expected)]) <= kth + TIE).sum())
    return min(found, len(expected)) / len(expected)


def _run_corpus(corpus: Corpus) -> tuple[dict, list[Row]]:
    size = len(corpus.vectors)
    load_s: float | None = None
    build_s: float | None = None
    notices: tuple[str, ...] = ()
    if REUSE:
        groups, index_bytes = _reused(corpus)
        print(f"{corpus.name}: reusing {size:,} chunks and their graph "
              f"({index_bytes / 2**20:.0f} MiB)", flush=True)  # fmt: skip
    else:
        groups, load_s, build = _load_and_build(corpus)
        build_s, index_bytes, notices = build.seconds, build.index_bytes, build.notices
        print(f"{corpus.name}: loaded {size} chunks in {load_s:.1f}s; HNSW built in "
              f"{build_s:.1f}s ({index_bytes / 2**20:.0f} MiB)", flush=True)  # fmt: skip
    searched = _search_settings(_principal(groups[1.0]))
    print(f"{corpus.name}: {searched}", flush=True)

    strategies = _strategies()
    rows: list[Row] = []
    for selectivity, group in groups.items():
        principal = _principal(group)
        visible = _visible(principal)
        truth = [strategies["exact"](principal, q) for q in corpus.queries]
        for name, run in strategies.items():
            run(principal, corpus.queries[0])  # warm up
            latencies, recalls, id_recalls, counts = [], [], [], []
            for query, expected in zip(corpus.queries, truth, strict=True):
                started = time.perf_counter()
                got = run(principal, query)
                latencies.append((time.perf_counter() - started) * 1000)
                counts.append(len(got))
                recalls.append(_recall(corpus, query, expected[:K], got))
                want = set(expected[:K])
                id_recalls.append(len(want & set(got)) / len(want) if want else 1.0)
            latencies.sort()
            rows.append(
                Row(
                    corpus=corpus.name,
                    strategy=name,
                    selectivity=selectivity,
                    visible_chunks=visible,
                    recall_at_k=round(statistics.mean(recalls), 4),
                    id_recall_at_k=round(statistics.mean(id_recalls), 4),
                    min_rows=min(counts),
                    mean_rows=round(statistics.mean(counts), 2),
                    p50_ms=round(statistics.median(latencies), 2),
                    p95_ms=round(latencies[int(0.95 * (len(latencies) - 1))], 2),
                )
            )
            print(json.dumps(asdict(rows[-1])), flush=True)
    summary = {
        "corpus": corpus.name,
        "description": corpus.description,
        "size": size,
        "load_s": None if load_s is None else round(load_s, 1),
        "index_build_s": None if build_s is None else round(build_s, 1),
        "index_mib": round(index_bytes / 2**20, 1),
        "index_build_notices": list(notices),
        **searched,
    }
    return summary, rows


def main() -> int:
    _configure_database()
    if REUSE and len(CORPORA) != 1:
        raise SystemExit("REUSE=1 measures one corpus: set CORPUS too")
    if not REUSE:
        _recreate_database()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    builders = {"synthetic": lambda: synthetic_corpus(SIZE), "text": lambda: text_corpus(TEXT_SIZE)}
    results = []
    for name in CORPORA:
        corpus = builders[name.strip()]()
        if os.environ.get("PREPARE_ONLY"):
            print(f"{corpus.name}: {len(corpus.vectors):,} chunks ready", flush=True)
            continue
        results.append(_run_corpus(corpus))
    if not results:
        return 0

    from django.conf import settings

    m, ef_construction = graph_parameters()
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    ran_on = machine.describe()
    (out / f"{RESULTS}.json").write_text(
        json.dumps(
            {
                "machine": ran_on,
                "queries": QUERIES,
                "k": K,
                "hnsw": {
                    "m": m,
                    "ef_construction": ef_construction,
                    "ef_search": settings.RETRIEVAL_HNSW_EF_SEARCH,
                },
                "corpora": [
                    {**summary, "rows": [asdict(r) for r in rows]} for summary, rows in results
                ],
            },
            indent=2,
        )
    )
    table = [f"Machine: {machine.summary(ran_on)}.", ""]
    for summary, rows in results:
        table += [
            f"**{summary['corpus']}**: {summary['description']}; {summary['size']:,} chunks, "
            f"{QUERIES} queries, k={K}; HNSW (m={m}, ef_construction={ef_construction}, "
            f"ef_search {summary['ef_search']}: RETRIEVAL_HNSW_EF_SEARCH "
            f"{settings.RETRIEVAL_HNSW_EF_SEARCH} scaled to the corpus) "
            + (
                "reused from the previous run"
                if summary["index_build_s"] is None
                else f"built in {summary['index_build_s']:.1f} s"
            )
            + "".join(f" (build notice: {n})" for n in summary["index_build_notices"])
            + f", {summary['index_mib']:.0f} MiB; exact plan at or below "
            f"{summary['exact_threshold']:,} visible chunks.",
            "",
            "| selectivity | visible chunks | strategy | recall@10 | ids@10 | min rows "
            "| p50 ms | p95 ms |",
            "|---|---|---|---|---|---|---|---|",
            *(
                f"| {r.selectivity:.1%} | {r.visible_chunks:,} | {r.strategy} "
                f"| {r.recall_at_k:.3f} | {r.id_recall_at_k:.3f} | {r.min_rows} "
                f"| {r.p50_ms:.1f} | {r.p95_ms:.1f} |"
                for r in rows
            ),
            "",
        ]
    (out / f"{RESULTS}.md").write_text("\n".join(table))
    print("\n".join(table))
    return 0


if __name__ == "__main__":
    sys.exit(main())
