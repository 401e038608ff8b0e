"""The retrieval benchmark's recall (`make bench-retrieval`): a row tied with exact's k-th
by distance counts as found, whichever of the tied ids it is; a farther row does not."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np

BENCH = Path(__file__).resolve().parents[2] / "bench" / "bench_retrieval.py"


def _bench():
    spec = importlib.util.spec_from_file_location("bench_retrieval_recall", BENCH)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_duplicate_of_an_exact_row_counts_and_a_farther_row_does_not():
    bench = _bench()
    # Chunk ids 1..4: 2 and 3 are the same vector; 4 points away from the query.
    vectors = np.asarray([[1, 0], [0.8, 0.6], [0.8, 0.6], [0, 1]], dtype=np.float32)
    corpus = bench.Corpus("t", "", vectors, np.ones(4, dtype=int), np.zeros((0, 2)))
    query = np.asarray([1, 0], dtype=np.float32)
    exact = [1, 2]
    assert bench._recall(corpus, query, exact, [1, 3]) == 1.0  # 3 ties with 2
    assert bench._recall(corpus, query, exact, [1, 4]) == 0.5
    assert bench._recall(corpus, query, exact, []) == 0.0
    assert bench._recall(corpus, query, [], [1]) == 1.0
