"""One guard setting, two values, compared in the same process (`make bench-guard-ab`).

    SETTING=GUARD_EMBEDDING_MAX_PIECES A=0 B=2 SPLITS=heldout16,heldout19 make bench-guard-ab

For each split under bench/data/guards/ (`guards` is the in-sample corpus), runs
`bench_guards.run_detection` once per value and round, alternating which value goes first
(A B, B A, A B, ...), so that drift in the machine's speed falls on both alike. Detection
counts come from the first round (the scan is deterministic); latency is reported per round
and as the median over rounds of each round's p95. `A` and `B` are JSON values (`0`, `true`,
`"static"`). Writes bench/results/guard_ab.json and guard_ab.md; no text of a split is
printed or written.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")

from bench import bench_guards, machine  # noqa: E402

STEPS = ("scan", "pii", "total")


def counts(result: dict[str, Any]) -> dict[str, int]:
    """Whole lines, not rates: attacks detected (flagged or blocked) and blocked, benign
    blocked and flagged."""
    attacks, benign = result["corpus"]["attacks"], result["corpus"]["benign"]
    return {
        "attacks": attacks,
        "detected": round(result["attacks_blocked_or_flagged"] * attacks),
        "blocked": round(result["attacks_blocked"] * attacks),
        "benign": benign,
        "benign_blocked": round(result["benign_blocked"] * benign),
        "benign_flagged": round(result["benign_flagged"] * benign),
    }


def split_dir(split: str) -> Path:
    """bench/data/guards/<split>, or the in-sample corpus for "guards"; never a sealed one."""
    directory = bench_guards.DATA if split == "guards" else bench_guards.DATA / split
    if "sealed" in Path(split).parts or not (directory / "attacks.jsonl").is_file():
        raise SystemExit(f"no such split: {split}")
    return directory


def compare(split: str, setting: str, values: dict[str, Any], rounds: int) -> dict[str, Any]:
    from django.conf import settings

    rows = bench_guards.load_corpus(split_dir(split))
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in values}
    names = list(values)
    before = getattr(settings, setting)
    try:
        for n in range(rounds):
            for name in names if n % 2 == 0 else names[::-1]:
                setattr(settings, setting, values[name])
                runs[name].append(bench_guards.run_detection(rows))
    finally:
        setattr(settings, setting, before)
    out: dict[str, Any] = {"split": split}
    for name, results in runs.items():
        out[name] = {
            "value": values[name],
            **counts(results[0]),
            "p95_by_round": {s: [r["latency_ms"][s]["p95"] for r in results] for s in STEPS},
        }
        out[name]["p95_median"] = {
            s: round(statistics.median(v), 2) for s, v in out[name]["p95_by_round"].items()
        }
    return out


def markdown(result: dict[str, Any]) -> str:
    setting, rounds = result["setting"], result["rounds"]
    lines = [
        f"Machine: {machine.summary(result['machine'])}",
        "",
        f"`{setting}`: A = {json.dumps(result['values']['A'])}, "
        f"B = {json.dumps(result['values']['B'])}; {rounds} rounds, alternating order. "
        "Latency: median over rounds of each round's p95 (ms).",
        "",
        "| split | value | detected | blocked | benign blocked | benign flagged "
        "| scan p95 | pii p95 | total p95 | total p95 by round |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for split in result["splits"]:
        for name in ("A", "B"):
            r = split[name]
            med = r["p95_median"]
            by_round = " / ".join(f"{v:.1f}" for v in r["p95_by_round"]["total"])
            lines.append(
                f"| {split['split']} | {name} | {r['detected']}/{r['attacks']} | {r['blocked']} "
                f"| {r['benign_blocked']}/{r['benign']} | {r['benign_flagged']} "
                f"| {med['scan']} | {med['pii']} | {med['total']} | {by_round} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    import django

    django.setup()
    setting = os.environ["SETTING"]
    values = {"A": json.loads(os.environ["A"]), "B": json.loads(os.environ["B"])}
    splits = [s for s in os.environ.get("SPLITS", "guards").split(",") if s]
    rounds = int(os.environ.get("ROUNDS", "3"))
    bench_guards.LATENCY_PASSES = 1  # one timed pass per run; the rounds repeat it
    result: dict[str, Any] = {
        "machine": machine.describe(),
        "setting": setting,
        "values": values,
        "rounds": rounds,
        "splits": [],
    }
    for split in splits:
        split_dir(split)  # fail before any run on a misspelt or sealed split
    for split in splits:
        compared = compare(split, setting, values, rounds)
        result["splits"].append(compared)
        print(json.dumps(compared), flush=True)
    bench_guards.RESULTS.mkdir(parents=True, exist_ok=True)
    (bench_guards.RESULTS / "guard_ab.json").write_text(json.dumps(result, indent=2))
    (bench_guards.RESULTS / "guard_ab.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
