"""The input scan over every spent guard split, for trying a detector change before it is
judged on a sealed one.

    .venv/bin/python -m infra.run script bench/guard_spent.py
    EXTRA=a.jsonl,b.jsonl OUT=/tmp/b.json .venv/bin/python -m infra.run script bench/guard_spent.py

Runs `orchestration.injection.scan` at the deployed thresholds over the in-sample corpus and
every `bench/data/guards/heldoutN` split (never `sealed/`), and prints per split: attacks
detected (flagged or blocked) and blocked, benign blocked and flagged or blocked. `EXTRA`:
training files (the corpus's JSONL format) added to the learned detector's fit for this run
only. `OUT`: a JSON file with each line's split, label, action, deciding detector and scores
(no texts), to compare two runs line by line.

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

from bench.bench_guards import DATA, blind_split_numbers  # noqa: E402


def spent_splits() -> list[Path]:
    """The in-sample corpus, held-out 1, then held-out 2, 3, ... in order."""
    return [DATA, DATA / "heldout", *(DATA / f"heldout{n}" for n in blind_split_numbers())]


def fit_with(extra: list[Path]) -> None:
    """Make the process's learned detector the one fit on the corpus plus `extra`."""
    import numpy as np

    from orchestration import guard_model

    rows = guard_model.load_corpus()
    texts = [r.text for r in rows]
    labels = [r.attack for r in rows]
    vectors = guard_model.corpus_embeddings(texts)
    for path in extra:
        added = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        texts += [item["text"] for item in added]
        labels += [item["label"] == "attack" for item in added]
        vectors = np.concatenate([vectors, guard_model.embed_corpus([a["text"] for a in added])])
    guard_model._model = guard_model.fit(texts, labels, vectors)


def scan_split(directory: Path) -> list[dict[str, Any]]:
    from orchestration.injection import Thresholds, scan

    thresholds = Thresholds.from_settings("GUARD_INPUT_THRESHOLDS")
    out = []
    for name in ("attacks.jsonl", "benign.jsonl"):
        for line in (directory / name).read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            verdict = scan(item["text"], thresholds)
            out.append(
                {
                    "split": directory.name,
                    "label": item["label"],
                    "action": int(verdict.action),
                    "detector": verdict.detector,
                    "scores": verdict.scores,
                }
            )
    return out


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
    extra = [Path(p) for p in os.environ.get("EXTRA", "").split(",") if p]
    if extra:
        fit_with(extra)
    lines: list[dict[str, Any]] = []
    for directory in spent_splits():
        split = scan_split(directory)
        lines += split
        print(directory.name, counts(split), flush=True)
    print("all", counts(lines))
    if out := os.environ.get("OUT"):
        Path(out).write_text(json.dumps(lines))


if __name__ == "__main__":
    main()
