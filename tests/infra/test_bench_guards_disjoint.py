"""`make bench-guards` refuses to score a text the detector was fit on: the corpus and its
supplements alike, whatever the case, spacing or punctuation."""

from __future__ import annotations

import pytest

from bench import bench_guards
from orchestration import guard_model


def test_evaluation_texts_equal_to_training_texts_are_refused() -> None:
    training = guard_model.training_set()
    corpus_line = training.texts[0]
    supplement_line = training.texts[training.corpus_size]  # the first supplement's first line
    ordinary = bench_guards.Row("Which floor is the finance team moving to?", "benign", "")
    bench_guards.check_disjoint([ordinary])  # nothing shared: no error
    for text in (corpus_line, f"  {supplement_line.upper()}!! "):
        with pytest.raises(SystemExit, match="1 evaluation texts"):
            bench_guards.check_disjoint([ordinary, bench_guards.Row(text, "attack", "")])
