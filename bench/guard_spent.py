"""The input scan over every spent guard split, for trying a detector change before it is
judged on a sealed one.

    .venv/bin/python -m infra.run script bench/guard_spent.py
    EXTRA=dir1,dir2:0.3 OUT=/tmp/b.json .venv/bin/python -m infra.run script bench/guard_spent.py
    SPLITS=heldout21,heldout22 LEARNED_FLAG=0.35 .venv/bin/python -m infra.run script \
        bench/guard_spent.py

Runs `orchestration.injection.scan` at the deployed thresholds over the in-sample corpus and
every `bench/data/guards/heldoutN` split (never `sealed/`), and prints per split: attacks
detected (flagged or blocked) and blocked, benign blocked and flagged or blocked. `EXTRA`:
folders laid out as the training corpus (`attacks.jsonl`, `benign.jsonl`), each with an
optional sample weight after a colon (1 when not given), added to the learned detector's fit
for this run only, as a supplement is (their n-grams join the vocabulary). `LEARNED_FLAG`:
the learned detector's flag threshold for this run (its block threshold stays). `OUT`: a
JSON file with each line's split, label, action, deciding detector and scores (no texts), to
compare two runs line by line. `SUPPLEMENTS`: the learned detector's supplements for this
run (`none`, or `name:weight,...`; the deployed ones when not set). `SPLITS`: only these
(names as under bench/data/guards/; `guards` is the in-sample corpus). Also prints the
rules' own time per input (the injection and intent rules as the scan runs them, three
passes), the part of the scan a rule change moves.

These splits are spent: every figure here is development evidence. A change is judged on a
sealed split, with its rule written down first (docs/BENCHMARKS.md, parts I–N).
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")

from bench.bench_guards import DATA, blind_split_numbers, load_corpus, pct  # noqa: E402


def spent_splits() -> list[Path]:
    """The in-sample corpus, held-out 1, then held-out 2, 3, ... in order."""
    return [DATA, DATA / "heldout", *(DATA / f"heldout{n}" for n in blind_split_numbers())]


def fit_with(extra: list[tuple[Path, float]], supplements: dict[str, float] | None) -> None:
    """Make the process's learned detector the one fit on the corpus, `supplements` (the
    deployed ones when None) and `extra` (folder, sample weight)."""
    import numpy as np

    from orchestration import guard_model

    deployed = guard_model.training_set()
    shipped = dict(zip(deployed.texts, guard_model.corpus_embeddings(deployed.texts), strict=True))
    training = guard_model.training_set(supplements)
    added = [(row, weight) for folder, weight in extra for row in guard_model.load_corpus(folder)]
    texts = training.texts + [row.text for row, _ in added]
    missing = [t for t in texts if t not in shipped]
    fresh = dict(zip(missing, guard_model.embed_corpus(missing), strict=True)) if missing else {}
    vectors = np.asarray([shipped[t] if t in shipped else fresh[t] for t in texts])
    guard_model._model = guard_model.fit(
        texts,
        training.labels + [row.attack for row, _ in added],
        vectors,
        sample_weight=np.concatenate([training.weights, [weight for _, weight in added]]),
    )


def _weighted(value: str) -> list[tuple[str, float]]:
    """`a,b:0.3` -> [("a", 1.0), ("b", 0.3)]."""
    out = []
    for item in filter(None, value.split(",")):
        name, _, weight = item.partition(":")
        out.append((name, float(weight or 1.0)))
    return out


def parse_supplements(value: str) -> dict[str, float] | None:
    """`none` -> {}; `decoding:0.3,harm_requests` -> those (1 when no weight); empty -> None
    (the deployed ones)."""
    if not value:
        return None
    return {} if value == "none" else dict(_weighted(value))


def parse_extra(value: str) -> list[tuple[Path, float]]:
    """`dir1,dir2:0.3` -> [(dir1, 1.0), (dir2, 0.3)]."""
    return [(Path(folder), weight) for folder, weight in _weighted(value)]


def thresholds() -> Any:
    """The deployed input thresholds, with `LEARNED_FLAG` when set."""
    from dataclasses import replace

    from orchestration.injection import Thresholds

    deployed = Thresholds.from_settings("GUARD_INPUT_THRESHOLDS")
    if flag := os.environ.get("LEARNED_FLAG"):
        return replace(deployed, learned=(float(flag), deployed.learned[1]))
    return deployed


def scan_split(directory: Path) -> list[dict[str, Any]]:
    from orchestration.injection import scan

    chosen = thresholds()
    out = []
    for row in load_corpus(directory):
        verdict = scan(row.text, chosen)
        out.append(
            {
                "split": directory.name,
                "label": row.label,
                "action": int(verdict.action),
                "detector": verdict.detector,
                "scores": verdict.scores,
            }
        )
    return out


def rules_time(directories: list[Path], passes: int = 3) -> dict[str, float]:
    """p50 / p95 / max of the rules and the intent rules together (`pattern_scores`, as
    `scan` runs them), in ms."""
    import time

    from orchestration.injection import Thresholds, pattern_scores
    from orchestration.normalize import inspection_views, normalize

    thresholds = Thresholds.from_settings("GUARD_INPUT_THRESHOLDS")
    views = [
        inspection_views(row.text, normalize(row.text).text)
        for directory in directories
        for row in load_corpus(directory)
    ]
    times = []
    for _ in range(passes):
        for one in views:
            started = time.perf_counter()
            pattern_scores(one, thresholds)
            times.append((time.perf_counter() - started) * 1000)
    return {
        "p50": round(pct(times, 0.5), 3),
        "p95": round(pct(times, 0.95), 3),
        "max": round(max(times, default=0.0), 3),
    }


def counts(lines: list[dict[str, Any]]) -> dict[str, int]:
    attacks = [x for x in lines if x["label"] == "attack"]
    benign = [x for x in lines if x["label"] == "benign"]
    return {
        "attacks": len(attacks),
        "detected": sum(x["action"] >= 1 for x in attacks),
        "blocked": sum(x["action"] == 2 for x in attacks),
        "benign": len(benign),
        "benign_blocked": sum(x["action"] == 2 for x in benign),
        "benign_flagged_or_blocked": sum(x["action"] >= 1 for x in benign),
    }


def main() -> None:
    import django

    django.setup()
    extra = parse_extra(os.environ.get("EXTRA", ""))
    supplements = parse_supplements(os.environ.get("SUPPLEMENTS", ""))
    if extra or supplements is not None:
        fit_with(extra, supplements)
    lines: list[dict[str, Any]] = []
    chosen = [name for name in os.environ.get("SPLITS", "").split(",") if name]
    spent = spent_splits()
    if unknown := set(chosen) - {d.name for d in spent}:
        raise SystemExit(f"no such spent split: {', '.join(sorted(unknown))}")
    directories = [d for d in spent if not chosen or d.name in chosen]
    for directory in directories:
        split = scan_split(directory)
        lines += split
        print(directory.name, counts(split), flush=True)
    print("all", counts(lines))
    print("rules and intent rules, ms per input", rules_time(directories))
    if out := os.environ.get("OUT"):
        Path(out).write_text(json.dumps(lines))


if __name__ == "__main__":
    main()
