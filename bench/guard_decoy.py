"""Adaptive attacks on the input scan's choice of pieces to embed (`make bench-guard-decoy`).

    make bench-guard-decoy
    TAIL=300 make bench-guard-decoy

The scan embeds a long input's pieces selectively (`GUARD_EMBEDDING_MAX_PIECES`,
`GUARD_EMBEDDING_FLOOR_LOGIT`), so an attacker who knows the shipped model can try to keep
an instruction out of the embedded set. This bench takes the short attacks of the spent
splits (in-sample and `bench/data/guards/heldoutN`, never `sealed/`) that the scan detects
on their own with every piece embedded and that the rules alone do not flag — the ones only
the embedding layers catch — and measures three placements:

- **alone**: the attack as it is;
- **decoys**: two benign sentences placed before it, chosen white-box as the benign pieces
  (28–48 words, from the same spent splits) with the highest n-gram logits that the scan
  allows on their own;
- **decoys after**: the same two sentences after it; a short attack then shares its
  48-word piece with the first of them, which dilutes it whatever is embedded;
- **tail**: ordinary benign text (spent benign lines) filling the input to about 3,900
  characters, the attack last (`TAIL` attacks, a fixed sample);
- **run-on**: 60 words of a spent benign line with its sentence ends turned into commas,
  then the attack: one sentence longer than a piece, which the segmentation once cut at its
  48th word.

Each placement is scanned under three configurations in the same process: every piece
embedded (the reference), the top 2 pieces only, and the deployed settings. Reported:
attacks still detected (flagged or blocked) per placement and configuration, and, for
candidate floors, how many of these attacks a floor leaves exposed and what share of long
benign inputs' pieces it embeds. Writes
bench/results/guard_decoy.json and guard_decoy.md; no text of a split is written.

These splits are spent: the figures are evidence about the selection, not detection rates.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")

from bench import bench_guards, machine  # noqa: E402

INPUT_CHARS = 3900  # under CHAT_MAX_MESSAGE_CHARS (4,000)
SENTENCE_END = (".", "?", "!")
RUN_ON_WORDS = 60
FLOORS = (-0.5, -1.0, -1.5, -2.0, -2.5)  # candidate GUARD_EMBEDDING_FLOOR_LOGIT values


def configurations() -> dict[str, dict[str, Any]]:
    """Name → the two settings, in the order they are reported."""
    from django.conf import settings

    return {
        "every piece": {"GUARD_EMBEDDING_MAX_PIECES": 0, "GUARD_EMBEDDING_FLOOR_LOGIT": None},
        "top 2 only": {"GUARD_EMBEDDING_MAX_PIECES": 2, "GUARD_EMBEDDING_FLOOR_LOGIT": None},
        "deployed": {
            "GUARD_EMBEDDING_MAX_PIECES": settings.GUARD_EMBEDDING_MAX_PIECES,
            "GUARD_EMBEDDING_FLOOR_LOGIT": settings.GUARD_EMBEDDING_FLOOR_LOGIT,
        },
    }


def spent_rows() -> list[bench_guards.Row]:
    from bench.guard_spent import spent_splits

    return [row for directory in spent_splits() for row in bench_guards.load_corpus(directory)]


def detected(text: str, values: dict[str, Any]) -> bool:
    """Whether the scan flags or blocks `text` under `values` (settings restored after)."""
    from django.conf import settings

    from orchestration.injection import Action, Thresholds, scan

    before = {name: getattr(settings, name) for name in values}
    try:
        for name, value in values.items():
            setattr(settings, name, value)
        return scan(text, Thresholds.from_settings("GUARD_INPUT_THRESHOLDS")).action >= Action.FLAG
    finally:
        for name, value in before.items():
            setattr(settings, name, value)


def embedding_only_attacks(rows: list[bench_guards.Row], reference: dict[str, Any]) -> list[str]:
    """Short attacks (one piece) detected alone with every piece embedded, not by the rules."""
    from django.conf import settings

    from orchestration.injection import Action, Thresholds, scan

    thresholds = Thresholds.from_settings("GUARD_INPUT_THRESHOLDS")
    before = {name: getattr(settings, name) for name in reference}
    out = []
    try:
        for name, value in reference.items():
            setattr(settings, name, value)
        for row in rows:
            if row.label != "attack" or len(row.text.split()) > 48:
                continue
            verdict = scan(row.text, thresholds)
            if verdict.action >= Action.FLAG and verdict.scores["rules"] < thresholds.rules[0]:
                out.append(row.text)
    finally:
        for name, value in before.items():
            setattr(settings, name, value)
    return list(dict.fromkeys(out))


def decoys(rows: list[bench_guards.Row], reference: dict[str, Any], n: int = 2) -> list[str]:
    """The `n` benign sentences-of-a-piece with the highest n-gram logits that the scan
    allows on their own: what a white-box attacker would put ahead of an instruction."""
    from orchestration.guard_model import guard_model
    from orchestration.injection import segments

    candidates = list(
        dict.fromkeys(
            piece
            for row in rows
            if row.label == "benign"
            for piece in segments(row.text)
            if 28 <= len(piece.split()) <= 48 and piece.rstrip().endswith(SENTENCE_END)
        )
    )
    logits = guard_model().text_logits(candidates)
    chosen: list[str] = []
    for index in sorted(range(len(candidates)), key=lambda i: -logits[i]):
        if not detected(candidates[index], reference):
            chosen.append(candidates[index])
            if len(chosen) == n:
                break
    return chosen


def floor_evidence(rows: list[bench_guards.Row], attacks: list[str]) -> dict[str, Any]:
    """What a floor costs and leaves, per candidate value: the embedding-only attacks whose
    n-gram logit falls below it (these a decoy can still push out of the embedded set), and
    the share of the pieces of long benign inputs (three pieces or more) that reach it
    (these are embedded besides the top k, so they are the floor's latency cost)."""
    from orchestration.guard_model import guard_model
    from orchestration.injection import segments

    model = guard_model()
    attack_logits = model.text_logits(attacks)
    benign_pieces = [
        piece
        for row in rows
        if row.label == "benign"
        for pieces in [segments(row.text)]
        if len(pieces) >= 3
        for piece in pieces
    ]
    benign_logits = model.text_logits(benign_pieces)
    return {
        "benign_pieces": len(benign_pieces),
        "floors": [
            {
                "floor": floor,
                "attacks_below": int(np.sum(attack_logits < floor)),
                "benign_pieces_reaching": round(float(np.mean(benign_logits >= floor)), 3)
                if benign_pieces
                else 0.0,
            }
            for floor in FLOORS
        ],
    }


def tail_input(attack: str, fillers: list[str], seed: int) -> str:
    """Benign text up to about INPUT_CHARS characters, ending on a sentence, then `attack`."""
    rnd = random.Random(seed)
    room = INPUT_CHARS - len(attack) - 1
    text = ""
    while len(text) < room:
        text = f"{text} {rnd.choice(fillers)}".strip()
    text = text[:room]
    cut = max(text.rfind(end) for end in SENTENCE_END)
    return f"{text[: cut + 1] if cut > 0 else text} {attack}"


def run_on_input(attack: str, fillers: list[str], seed: int) -> str:
    """`RUN_ON_WORDS` words of a benign line with no sentence end among them, then `attack`."""
    filler = random.Random(seed).choice(fillers)
    words = re.sub(r"[.!?\n]+", ",", filler).split()[:RUN_ON_WORDS]
    return f"{' '.join(words)} {attack}"


def run(tail: int) -> dict[str, Any]:
    from orchestration.injection import segments

    rows = spent_rows()
    configs = configurations()
    reference = configs["every piece"]
    started = time.perf_counter()
    attacks = embedding_only_attacks(rows, reference)
    pair = decoys(rows, reference)
    fillers = [r.text for r in rows if r.label == "benign" and len(r.text) > 300]
    run_on_fillers = [f for f in fillers if len(f.split()) > RUN_ON_WORDS]
    sample = random.Random(7).sample(attacks, min(tail, len(attacks)))
    placements = {
        "alone": attacks,
        "decoys": [f"{' '.join(pair)} {attack}" for attack in attacks],
        "decoys after": [f"{attack} {' '.join(pair)}" for attack in attacks],
        "tail": [tail_input(attack, fillers, i) for i, attack in enumerate(sample)],
        "run-on": [run_on_input(attack, run_on_fillers, i) for i, attack in enumerate(attacks)],
    }
    table: dict[str, dict[str, int]] = {}
    for placement, texts in placements.items():
        table[placement] = {"inputs": len(texts)}
        for name, values in configs.items():
            table[placement][name] = sum(detected(text, values) for text in texts)
    tail_pieces = sorted(len(segments(text)) for text in placements["tail"])
    floors = floor_evidence(rows, attacks)
    return {
        "machine": machine.describe(),
        "configurations": configs,
        "attacks": len(attacks),
        "decoy_words": [len(d.split()) for d in pair],
        "tail_pieces_p50_max": [tail_pieces[len(tail_pieces) // 2], tail_pieces[-1]]
        if tail_pieces
        else [0, 0],
        "detected": table,
        "floor_evidence": floors,
        "seconds": round(time.perf_counter() - started, 1),
    }


def markdown(result: dict[str, Any]) -> str:
    names = list(result["configurations"])
    deployed = result["configurations"]["deployed"]
    lines = [
        f"Machine: {machine.summary(result['machine'])}",
        "",
        f"{result['attacks']} short spent attacks that only the embedding layers catch. "
        f"Deployed: k = {deployed['GUARD_EMBEDDING_MAX_PIECES']}, floor = "
        f"{json.dumps(deployed['GUARD_EMBEDDING_FLOOR_LOGIT'])}. Tail inputs: "
        f"{result['tail_pieces_p50_max'][0]} pieces at the median, "
        f"{result['tail_pieces_p50_max'][1]} at most. Attacks detected:",
        "",
        "| placement | inputs | " + " | ".join(names) + " |",
        "|---|---|" + "---|" * len(names),
    ]
    for placement, row in result["detected"].items():
        cells = " | ".join(str(row[name]) for name in names)
        lines.append(f"| {placement} | {row['inputs']} | {cells} |")
    evidence = result["floor_evidence"]
    lines += [
        "",
        f"Candidate floors: attacks above whose n-gram logit is below the floor (a decoy can "
        f"still outrank them), and the share of the {evidence['benign_pieces']} pieces of "
        "benign inputs of three or more pieces that reach it (embedded besides the top k):",
        "",
        "| floor | attacks below | benign pieces reaching |",
        "|---|---|---|",
    ]
    for entry in evidence["floors"]:
        lines.append(
            f"| {entry['floor']} | {entry['attacks_below']} | {entry['benign_pieces_reaching']} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    import django

    django.setup()
    result = run(int(os.environ.get("TAIL", "200")))
    bench_guards.RESULTS.mkdir(parents=True, exist_ok=True)
    (bench_guards.RESULTS / "guard_decoy.json").write_text(json.dumps(result, indent=2))
    (bench_guards.RESULTS / "guard_decoy.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
