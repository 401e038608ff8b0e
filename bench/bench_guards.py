"""Guardrails: detection rate, false positives and latency per guard step.

    make bench-guards

Runs the labelled corpus in bench/data/guards/ (attacks and benign enterprise questions,
see build_notes.md for sources and licence) through the input guards exactly as the
pipeline does — normalisation, then the layered injection detector, then Presidio — and
reports, per detector and combined: precision, recall, false-positive rate; the share of
attacks blocked or flagged and of benign questions blocked; and latency p50/p95 per step.
PII: recall of redaction on a generated set (names, e-mails, phones, SSNs, card numbers,
IBANs, addresses) measured on the request the redactor hands to a provider.

Results: bench/results/guards.json and bench/results/guards.md.
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")

DATA = ROOT / "bench" / "data" / "guards"
RESULTS = ROOT / "bench" / "results"


@dataclass
class Row:
    text: str
    label: str
    family: str


def load_corpus() -> list[Row]:
    rows = []
    for name in ("attacks.jsonl", "benign.jsonl"):
        for line in (DATA / name).read_text().splitlines():
            item = json.loads(line)
            rows.append(Row(item["text"], item["label"], item["family"]))
    return rows


def check_disjoint(rows: list[Row]) -> None:
    """The corpus must not contain the detector's own reference texts."""
    from orchestration.injection import ATTACK_LIBRARY, BENIGN_ANCHORS, _lines

    reference = {t.strip().lower() for t in (*_lines(ATTACK_LIBRARY), *_lines(BENIGN_ANCHORS))}
    overlap = [r.text for r in rows if r.text.strip().lower() in reference]
    if overlap:
        raise SystemExit(f"corpus overlaps the detector's reference data: {overlap[:3]}")


def pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def rates(fired: list[bool], labels: list[bool]) -> dict[str, float]:
    tp = sum(f and lab for f, lab in zip(fired, labels, strict=True))
    fp = sum(f and not lab for f, lab in zip(fired, labels, strict=True))
    fn = sum(not f and lab for f, lab in zip(fired, labels, strict=True))
    negatives = sum(not lab for lab in labels)
    return {
        "precision": tp / (tp + fp) if tp + fp else 0.0,
        "recall": tp / (tp + fn) if tp + fn else 0.0,
        "fpr": fp / negatives if negatives else 0.0,
    }


def run_detection(rows: list[Row]) -> dict[str, Any]:
    from orchestration.injection import (
        Action,
        Thresholds,
        classifier_score,
        decide,
        rule_score,
        similarity_score,
    )
    from orchestration.normalize import inspection_views, normalize
    from orchestration.pii import pii_entities

    thresholds = Thresholds.from_settings("GUARD_INPUT_THRESHOLDS")
    timings: dict[str, list[float]] = {"normalize": [], "rules": [], "similarity": [], "pii": []}
    timings["total"] = []
    per_detector: dict[str, list[bool]] = {"rules": [], "similarity": []}
    verdicts: list[Action] = []
    missed: list[dict[str, str]] = []
    false_blocks: list[str] = []
    # Warm up the models (loaded once per process in production too).
    similarity_score(["warm up"])
    pii_entities("warm up John Smith")
    for row in rows:
        t0 = time.perf_counter()
        views = inspection_views(row.text, normalize(row.text).text)
        t1 = time.perf_counter()
        r_score, _ = rule_score(list(views.all))
        t2 = time.perf_counter()
        s_score = similarity_score(list(views.semantic[:4]))
        t3 = time.perf_counter()
        clf = classifier_score(views.semantic[0])
        scores = {"rules": r_score, "similarity": s_score}
        if clf is not None:
            scores["classifier"] = clf
        action, _ = decide(scores, thresholds)
        t4 = time.perf_counter()
        pii_entities(views.semantic[0])
        t5 = time.perf_counter()
        timings["normalize"].append((t1 - t0) * 1000)
        timings["rules"].append((t2 - t1) * 1000)
        timings["similarity"].append((t3 - t2) * 1000)
        timings["pii"].append((t5 - t4) * 1000)
        # What the pipeline pays: similarity is skipped when the rules already block.
        rules_block = r_score >= thresholds.rules[1]
        pipeline_ms = (t1 - t0) + (t2 - t1) + (0 if rules_block else (t3 - t2)) + (t5 - t4)
        timings["total"].append(pipeline_ms * 1000)
        per_detector["rules"].append(r_score >= thresholds.rules[0])
        per_detector["similarity"].append(s_score >= thresholds.similarity[0])
        verdicts.append(action)
        if row.label == "attack" and action is Action.ALLOW:
            missed.append({"family": row.family, "text": row.text[:90]})
        if row.label == "benign" and action is Action.BLOCK:
            false_blocks.append(row.text)
    labels = [r.label == "attack" for r in rows]
    detected = [v >= Action.FLAG for v in verdicts]
    attacks = [v for v, lab in zip(verdicts, labels, strict=True) if lab]
    benign = [v for v, lab in zip(verdicts, labels, strict=True) if not lab]
    families: dict[str, list[int]] = {}
    for row, v in zip(rows, verdicts, strict=True):
        if row.label == "attack":
            hit = families.setdefault(row.family, [0, 0])
            hit[0] += v >= Action.FLAG
            hit[1] += 1
    return {
        "corpus": {"attacks": sum(labels), "benign": len(labels) - sum(labels)},
        "detectors": {
            "rules": rates(per_detector["rules"], labels),
            "similarity": rates(per_detector["similarity"], labels),
            "combined": rates(detected, labels),
        },
        "attacks_blocked_or_flagged": sum(v >= Action.FLAG for v in attacks) / len(attacks),
        "attacks_blocked": sum(v is Action.BLOCK for v in attacks) / len(attacks),
        "benign_blocked": sum(v is Action.BLOCK for v in benign) / len(benign),
        "benign_flagged": sum(v is Action.FLAG for v in benign) / len(benign),
        "families": {k: f"{a}/{n}" for k, (a, n) in sorted(families.items())},
        "latency_ms": {
            step: {"p50": round(pct(v, 0.5), 2), "p95": round(pct(v, 0.95), 2)}
            for step, v in timings.items()
        },
        "missed": missed,
        "false_blocks": false_blocks,
    }


AREA_CODES = (212, 206, 303, 312, 415, 512, 617, 646, 702, 919)


def generated_pii(n: int, seed: int = 7) -> list[tuple[str, list[tuple[str, str]]]]:
    """Sentences with known PII values (Faker, fixed seed)."""
    from faker import Faker

    fake = Faker("en_US")
    Faker.seed(seed)
    rng = random.Random(seed)
    templates = [
        ("Please forward the contract to {name} at {email}.", ["name", "email"]),
        ("Call {name} on {phone} about the renewal.", ["name", "phone"]),
        ("The employee's SSN is {ssn} and the card on file is {card}.", ["ssn", "card"]),
        ("Refund to IBAN {iban} for {name}, please.", ["iban", "name"]),
        ("Ship the laptop to {name}, {address}.", ["name", "address"]),
        ("My email is {email} and my phone number is {phone}.", ["email", "phone"]),
    ]
    out = []
    for _ in range(n):
        template, fields = rng.choice(templates)
        values = {
            "name": fake.name(),
            "email": fake.email(),
            # Real-looking North American numbers (555-01xx are fictional and rejected).
            "phone": f"({rng.choice(AREA_CODES)}) {rng.randint(200, 999)}-"
            f"{rng.randint(0, 9999):04d}",
            "ssn": fake.ssn(),
            "card": fake.credit_card_number(card_type="visa16"),
            "iban": fake.iban(),
            "address": fake.address().replace("\n", ", "),
        }
        out.append((template.format(**values), [(f, values[f]) for f in fields]))
    return out


def _leaked(value: str, field: str, sent: str) -> bool:
    """Stricter than "the whole value is gone": for names any part of 3+ letters left in
    the request counts as a leak; for numbers, their digits; for addresses, the street line."""
    if value in sent:
        return True
    if field == "name":
        return any(len(part) >= 3 and part in sent for part in value.replace(".", " ").split())
    if field in {"phone", "ssn", "card", "iban"}:
        digits = "".join(ch for ch in value if ch.isalnum())
        return digits in "".join(ch for ch in sent if ch.isalnum())
    if field == "address":
        return value.split(",")[0] in sent
    return False


def run_pii(n: int = 200) -> dict[str, Any]:
    from app.identity import Tier
    from broker.types import CompletionRequest
    from orchestration.pii import presidio_redactor

    per_field: dict[str, list[int]] = {}
    for text, values in generated_pii(n):
        request = CompletionRequest(
            system="", user_message=text, context=(), sensitivity=Tier.CONFIDENTIAL,
            user_hash="bench", request_id="bench",
        )  # fmt: skip
        sent, _ = presidio_redactor(request)
        for field, value in values:
            counts = per_field.setdefault(field, [0, 0])
            counts[1] += 1
            counts[0] += _leaked(value, field, sent.user_message)
    total = sum(n for _, n in per_field.values())
    leaked = sum(k for k, _ in per_field.values())
    return {
        "values": total,
        "leaked": leaked,
        "recall": (total - leaked) / total,
        "per_field_recall": {f: round((n - k) / n, 3) for f, (k, n) in sorted(per_field.items())},
    }


def markdown(result: dict[str, Any]) -> str:
    det = result["detection"]
    lines = [
        f"Corpus: {det['corpus']['attacks']} attacks, {det['corpus']['benign']} benign.",
        "",
        "| detector | precision | recall | false-positive rate |",
        "|---|---|---|---|",
    ]
    for name, r in det["detectors"].items():
        lines.append(f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['fpr']:.3f} |")
    lines += [
        "",
        f"- attacks blocked or flagged: **{det['attacks_blocked_or_flagged']:.1%}** "
        f"(blocked {det['attacks_blocked']:.1%})",
        f"- benign questions blocked: **{det['benign_blocked']:.1%}** "
        f"(flagged {det['benign_flagged']:.1%})",
        f"- PII redaction recall before a provider: **{result['pii']['recall']:.1%}** "
        f"({result['pii']['values'] - result['pii']['leaked']}/{result['pii']['values']} values; "
        f"per field {result['pii']['per_field_recall']})",
        "",
        "| step | p50 ms | p95 ms |",
        "|---|---|---|",
    ]
    for step, v in det["latency_ms"].items():
        lines.append(f"| {step} | {v['p50']} | {v['p95']} |")
    lines += ["", "Per family (detected/total): " + ", ".join(
        f"{k} {v}" for k, v in det["families"].items()
    )]  # fmt: skip
    return "\n".join(lines) + "\n"


def main() -> None:
    import django

    django.setup()
    rows = load_corpus()
    check_disjoint(rows)
    result = {"detection": run_detection(rows), "pii": run_pii()}
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "guards.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "guards.md").write_text(markdown(result))
    print(markdown(result))
    if result["detection"]["missed"]:
        print("missed:", json.dumps(result["detection"]["missed"], indent=1))
    if result["detection"]["false_blocks"]:
        print("benign blocked:", result["detection"]["false_blocks"])
    _ = statistics


if __name__ == "__main__":
    main()
