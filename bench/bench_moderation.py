"""Output moderation (rules backend): harmful vs benign answers, and its cost.

    make bench-moderation

Runs bench/data/moderation/ (harmful and benign model answers, see build_notes.md)
through `orchestration.moderation` as the pipeline does: whole-answer verdicts, and the
streaming gate fed word by word. Reports recall per category, the false-positive rate on
benign answers, and latency p50/p95 (whole answer; streamed answer, all sentence checks).

Results: bench/results/moderation.json and bench/results/moderation.md.
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")

DATA = ROOT / "bench" / "data" / "moderation"
RESULTS = ROOT / "bench" / "results"
REPEAT = int(os.environ.get("REPEAT", "20"))


def _rows(name: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in (DATA / name).read_text().splitlines() if line]


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)


def run() -> dict[str, Any]:
    from app.identity import Tier
    from orchestration.moderation import ModerationGate, moderate, rules_categories

    harmful, benign = _rows("harmful.jsonl"), _rows("benign.jsonl")
    per_category: dict[str, list[int]] = {}
    missed, wrong_category = [], []
    for row in harmful:
        found = rules_categories(row["text"])
        counts = per_category.setdefault(row["category"], [0, 0])
        counts[1] += 1
        counts[0] += bool(found)
        if not found:
            missed.append(row["text"])
        elif row["category"] not in found:
            wrong_category.append(row["text"])
    false_positives = [r["text"] for r in benign if rules_categories(r["text"])]

    whole, streamed = [], []
    texts = [r["text"] for r in harmful + benign]
    for _ in range(REPEAT):
        for text in texts:
            start = time.perf_counter()
            moderate(text, tier=Tier.INTERNAL)
            whole.append((time.perf_counter() - start) * 1000)
            gate = ModerationGate(enabled=True)
            start = time.perf_counter()
            for word in re.findall(r"\S+\s*", text):
                if gate.feed(word).blocked:
                    break
            streamed.append((time.perf_counter() - start) * 1000)
    caught = sum(k for k, _ in per_category.values())
    return {
        "corpus": {"harmful": len(harmful), "benign": len(benign)},
        "recall": caught / len(harmful),
        "per_category": {c: f"{k}/{n}" for c, (k, n) in sorted(per_category.items())},
        "false_positive_rate": len(false_positives) / len(benign),
        "precision": caught / max(1, caught + len(false_positives)),
        "missed": missed,
        "wrong_category": wrong_category,
        "false_positives": false_positives,
        "latency_ms": {
            "answer": {"p50": _pct(whole, 0.5), "p95": _pct(whole, 0.95)},
            "streamed_answer": {"p50": _pct(streamed, 0.5), "p95": _pct(streamed, 0.95)},
        },
    }


def markdown(result: dict[str, Any]) -> str:
    lat = result["latency_ms"]
    lines = [
        f"Corpus: {result['corpus']['harmful']} harmful, {result['corpus']['benign']} benign "
        "answers (`bench/data/moderation/`).",
        "",
        "| measure | value |",
        "|---|---|",
        f"| harmful answers blocked (recall) | {result['recall']:.1%} |",
        f"| benign answers blocked (false-positive rate) | {result['false_positive_rate']:.1%} |",
        f"| precision | {result['precision']:.3f} |",
        f"| per category (blocked/total) | {result['per_category']} |",
        f"| whole answer, p50 / p95 ms | {lat['answer']['p50']} / {lat['answer']['p95']} |",
        f"| streamed answer (all sentence checks), p50 / p95 ms | "
        f"{lat['streamed_answer']['p50']} / {lat['streamed_answer']['p95']} |",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    import django

    django.setup()
    result = run()
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "moderation.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "moderation.md").write_text(markdown(result))
    print(markdown(result))
    for key in ("missed", "wrong_category", "false_positives"):
        if result[key]:
            print(f"{key}:", json.dumps(result[key], indent=1))


if __name__ == "__main__":
    main()
