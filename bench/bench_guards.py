"""Guardrails: detection rate, false positives and latency per guard step.

    make bench-guards

Runs the labelled corpus in bench/data/guards/ (attacks and benign enterprise questions,
see build_notes.md for sources and licence) through the input guards exactly as the
pipeline does — normalisation, then the layered injection detector, then Presidio — and
reports, per detector and combined: precision, recall, false-positive rate; the share of
attacks blocked or flagged and of benign questions blocked; and latency p50/p95 per step
("total", the whole input guard as the pipeline runs it, over LATENCY_PASSES passes of
each split, default 3).
Figures are reported twice: on the in-sample corpus (written by the engineer who tuned
the detectors) and on a held-out split (bench/data/guards/heldout/, no threshold tuned on it).

PII: recall of redaction on generated sets (names, e-mails, phones, SSNs, card numbers,
IBANs, addresses) measured on what the loopback provider server actually received through
the OpenAI SDK, per kind; the generator (Faker) shares no templates or name lists with the
recognisers. Over-redaction: PII spans found in the benign questions and the demo corpus.

Context scan: the labelled chunk set (bench/data/guards/context_chunks.jsonl) and the demo
corpus's chunks, rules (deployed) and the sentence-level similarity layer (off by default).

Results: bench/results/guards.json and bench/results/guards.md.
"""

from __future__ import annotations

import json
import os
import random
import re
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from bench import machine  # noqa: E402

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")
os.environ["LOOPBACK_PROVIDER_ENABLED"] = "1"  # dev settings; prod refuses it

DATA = ROOT / "bench" / "data" / "guards"
RESULTS = ROOT / "bench" / "results"
# Passes of the whole input guard over each split for "total": a split's p95 rests on its
# ~15 slowest lines, and one pass on this machine moved by 5-10 ms from run to run.
LATENCY_PASSES = int(os.environ.get("LATENCY_PASSES", "3"))


@dataclass
class Row:
    text: str
    label: str
    family: str


def load_corpus(directory: Path = DATA) -> list[Row]:
    rows = []
    for name in ("attacks.jsonl", "benign.jsonl"):
        for line in (directory / name).read_text().splitlines():
            item = json.loads(line)
            rows.append(Row(item["text"], item["label"], item["family"]))
    return rows


def blind_split_numbers(directory: Path = DATA) -> list[int]:
    """2, 3, ...: the blind splits under bench/data/guards/heldoutN/."""
    found = (re.fullmatch(r"heldout(\d+)", p.name) for p in directory.iterdir() if p.is_dir())
    return sorted(int(m.group(1)) for m in found if m)


def check_disjoint(rows: list[Row]) -> None:
    """The corpus must not contain the detector's own reference or training texts."""
    from orchestration.guard_model import training_set
    from orchestration.injection import (
        ATTACK_LIBRARY,
        BENIGN_ANCHORS,
        BENIGN_CONTEXT_ANCHORS,
        _lines,
    )

    def key(text: str) -> str:  # case, spacing and punctuation do not make a text new
        return re.sub(r"\W+", " ", text).strip().lower()

    reference = {
        key(t)
        for path in (ATTACK_LIBRARY, BENIGN_ANCHORS, BENIGN_CONTEXT_ANCHORS)
        for t in _lines(path)
    } | {key(text) for text in training_set().texts}
    overlap = [r.text for r in rows if key(r.text) in reference]
    if overlap:
        # A count, not the texts: a blind split's lines must not be shown.
        raise SystemExit(f"{len(overlap)} evaluation texts equal the detector's reference data")


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
    from orchestration.injection import Action, Thresholds, rule_score, scan
    from orchestration.normalize import inspection_views, normalize
    from orchestration.pii import pii_entities

    thresholds = Thresholds.from_settings("GUARD_INPUT_THRESHOLDS")
    # For each detector's own precision and recall, every detector scores every text (the
    # pipeline skips the later ones once the rules block); not timed.
    every_detector = replace(thresholds, rules=(thresholds.rules[0], 2.0))
    from orchestration.pipeline import anomaly_kind, screen_input

    # "scan" is every detector after the rules (similarity, learned, classifier), which the
    # pipeline skips when the rules already block. "sequential": the steps' sum, one after
    # the other (the baseline); "total": what the pipeline pays, normalisation then
    # `screen_input` (PII alongside the scan), timed whole.
    timings: dict[str, list[float]] = {"normalize": [], "rules": [], "scan": [], "pii": []}
    timings["sequential"] = []
    timings["total"] = []
    per_detector: dict[str, list[bool]] = {
        "rules": [],
        "intent": [],
        "similarity": [],
        "learned": [],
    }
    verdicts: list[Action] = []
    # Each line's anomaly signal ("" when allowed), counted by label: attack, benign, and the
    # benign lines that talk about security (see `anomaly_exposure`).
    kinds: dict[str, dict[str, int]] = {"attack": {}, "benign": {}, "benign_security": {}}
    missed: list[dict[str, str]] = []
    false_blocks: list[str] = []
    # Warm up the models (loaded once per process in production too).
    scan("warm up", thresholds)
    pii_entities("warm up John Smith")
    screen_input("warm up John Smith", thresholds)

    def guarded(text: str) -> float:
        """The input guard as the pipeline runs it, timed whole (ms)."""
        started = time.perf_counter()
        normalized = normalize(text).text
        screen_input(normalized, thresholds, views=inspection_views(text, normalized))
        return (time.perf_counter() - started) * 1000

    for row in rows:
        timings["total"].append(guarded(row.text))
        t0 = time.perf_counter()
        normalized = normalize(row.text).text
        views = inspection_views(row.text, normalized)
        t1 = time.perf_counter()
        rule_score(list(views.all))
        t2 = time.perf_counter()
        verdict = scan(normalized, thresholds, views=views)
        t3 = time.perf_counter()
        pii_entities(normalized)
        t4 = time.perf_counter()
        action = verdict.action
        timings["normalize"].append((t1 - t0) * 1000)
        timings["rules"].append((t2 - t1) * 1000)
        timings["scan"].append((t3 - t2) * 1000)
        timings["pii"].append((t4 - t3) * 1000)
        timings["sequential"].append((t1 - t0 + t3 - t2 + t4 - t3) * 1000)
        all_scores = scan(normalized, every_detector, views=views).scores
        for detector in per_detector:
            score = all_scores.get(detector)
            per_detector[detector].append(
                score is not None and score >= getattr(thresholds, detector)[0]
            )
        verdicts.append(action)
        kind = anomaly_kind(action is not Action.BLOCK, verdict, thresholds) if action else ""
        groups = [row.label]
        if row.label == "benign" and row.family in SECURITY_TALK:
            groups.append("benign_security")
        for group in groups:
            kinds[group][kind] = kinds[group].get(kind, 0) + 1
        if row.label == "attack" and action is Action.ALLOW:
            missed.append({"family": row.family, "text": row.text[:90]})
        if row.label == "benign" and action is Action.BLOCK:
            false_blocks.append(row.text)
    # "total" pools every pass; each pass's own p95 is kept to show the spread.
    total_p95_by_pass = [pct(timings["total"], 0.95)]
    for _ in range(LATENCY_PASSES - 1):
        one_pass = [guarded(row.text) for row in rows]
        total_p95_by_pass.append(pct(one_pass, 0.95))
        timings["total"].extend(one_pass)
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
            **{name: rates(fired, labels) for name, fired in per_detector.items()},
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
        "total_p95_by_pass": [round(v, 2) for v in total_p95_by_pass],
        "anomaly_kinds": kinds,
        "missed": missed,
        "false_blocks": false_blocks,
    }


# Benign families that talk about security and AI misuse, the questions most often flagged.
SECURITY_TALK = ("security_ai_topic", "tricky_benign")
EXPOSURE_TURNS = (10, 20, 30)


def _pooled(results: list[dict[str, Any]], group: str) -> dict[str, int]:
    pooled: dict[str, int] = {}
    for result in results:
        for kind, n in result["anomaly_kinds"][group].items():
            pooled[kind] = pooled.get(kind, 0) + n
    return pooled


def _weights(counts: dict[str, int], weights: dict[str, float]) -> Any:
    import numpy as np

    return np.repeat([weights[k] if k else 0.0 for k in counts], list(counts.values()))


def exposure(
    counts: dict[str, int], weights: dict[str, float], *, draws: int = 20_000, seed: int = 1
) -> dict[str, Any]:
    """What the guard's signals do to a user's anomaly score within one window, as a model:
    each turn is a line drawn at random from a population whose anomaly signals are `counts`
    (kind -> lines, "" for allowed), weighted by `weights`. For benign users, the chance of
    reaching the throttle and lock thresholds in 10, 20 or 30 turns; the turns an attacker
    needs to reach each (median and p95)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    population = _weights(counts, weights)
    throttle, lock = _anomaly_thresholds()
    reached: dict[str, dict[str, float]] = {}
    for turns in EXPOSURE_TURNS:
        score = rng.choice(population, size=(draws, turns)).sum(axis=1)
        reached[str(turns)] = {
            "throttled": float((score >= throttle).mean()),
            "locked": float((score >= lock).mean()),
        }
    running = rng.choice(population, size=(draws, 200)).cumsum(axis=1)

    def turns_to(level: float) -> dict[str, float]:
        hit = running >= level
        first = np.where(hit.any(axis=1), hit.argmax(axis=1) + 1, 201)
        return {"median": float(np.median(first)), "p95": float(np.percentile(first, 95))}

    return {
        "reached": reached,
        "turns_to_throttle": turns_to(throttle),
        "turns_to_lock": turns_to(lock),
    }


def _anomaly_thresholds() -> tuple[float, float]:
    from django.conf import settings

    return float(settings.ANOMALY_THROTTLE_AT), float(settings.ANOMALY_LOCK_AT)


def anomaly_exposure(blind: list[dict[str, Any]]) -> dict[str, Any]:
    """`exposure` over the blind splits pooled, with the deployed weights and, in the same
    process, with every flag at the `flagged` weight (what the weak-flag weight changes)."""
    from django.conf import settings

    deployed = dict(settings.ANOMALY_WEIGHTS)
    flat = {**deployed, "flagged_weak": deployed["flagged"]}
    out: dict[str, Any] = {}
    for group in ("benign", "benign_security", "attack"):
        counts = _pooled(blind, group)
        out[group] = {
            "lines": sum(counts.values()),
            "signals": counts,
            "deployed": exposure(counts, deployed),
            "every_flag_full_weight": exposure(counts, flat),
        }
    return out


AREA_CODES = (212, 206, 303, 312, 415, 512, 617, 646, 702, 919)


# The templates the recognisers were developed against ("in-sample"), and templates written
# afterwards without running them first ("held-out").
IN_SAMPLE_TEMPLATES = [
    ("Please forward the contract to {name} at {email}.", ["name", "email"]),
    ("Call {name} on {phone} about the renewal.", ["name", "phone"]),
    ("The employee's SSN is {ssn} and the card on file is {card}.", ["ssn", "card"]),
    ("Refund to IBAN {iban} for {name}, please.", ["iban", "name"]),
    ("Ship the laptop to {name}, {address}.", ["name", "address"]),
    ("My email is {email} and my phone number is {phone}.", ["email", "phone"]),
]
HELD_OUT_TEMPLATES = [
    ("Hi, this is {name}; please update my mailing address to {address}.", ["name", "address"]),
    ("{name} ({email}) reported the outage at 9am.", ["name", "email"]),
    ("Can you check why the payroll SSN {ssn} for {name} was rejected?", ["ssn", "name"]),
    ("Payment card {card} expired, contact {name} at {phone}.", ["card", "name", "phone"]),
    ("Transfer the deposit to {iban}, beneficiary {name}.", ["iban", "name"]),
    ("our new hire {lname} starts monday, send the badge to {address}", ["lname", "address"]),
    ("Escalate to {name} - phone {phone}, mail {email}.", ["name", "phone", "email"]),
    ("Is {name} still the owner of the vendor account?", ["name"]),
]
# Names from other Faker locales (Latin script), to see beyond a US Census name list.
NAME_LOCALES = ("en_IN", "en_NG", "en_KE", "en_PK", "en_GB", "en_IE", "es_MX", "fr_FR", "de_DE")


def generated_pii(
    n: int, seed: int = 7, templates: list[tuple[str, list[str]]] | None = None,
    locales: tuple[str, ...] = ("en_US",),
) -> list[tuple[str, list[tuple[str, str]]]]:  # fmt: skip
    """Sentences with known PII values (Faker, fixed seed)."""
    from faker import Faker

    fakes = [Faker(locale) for locale in locales]
    us = Faker("en_US")
    Faker.seed(seed)
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        template, fields = rng.choice(templates or IN_SAMPLE_TEMPLATES)
        name = rng.choice(fakes).name()
        values = {
            "name": name,
            "lname": name.lower(),
            "email": us.email(),
            # Real-looking North American numbers (555-01xx are fictional and rejected).
            "phone": f"({rng.choice(AREA_CODES)}) {rng.randint(200, 999)}-"
            f"{rng.randint(0, 9999):04d}",
            "ssn": us.ssn(),
            "card": us.credit_card_number(card_type="visa16"),
            "iban": us.iban(),
            "address": us.address().replace("\n", ", "),
        }
        out.append((template.format(**values), [(f, values[f]) for f in fields]))
    return out


def _leaked(value: str, field: str, sent: str) -> bool:
    """Stricter than "the whole value is gone": for names any part of 3+ letters left in
    the request counts as a leak; for numbers, their digits; for addresses, the street line."""
    if value in sent:
        return True
    if field in {"name", "lname"}:
        return any(len(part) >= 3 and part in sent for part in value.replace(".", " ").split())
    if field in {"phone", "ssn", "card", "iban"}:
        digits = "".join(ch for ch in value if ch.isalnum())
        return digits in "".join(ch for ch in sent if ch.isalnum())
    if field == "address":
        return value.split(",")[0] in sent
    return False


def _pii_recall(samples: list[tuple[str, list[tuple[str, str]]]], server: Any) -> dict[str, Any]:
    """Redact each sample as the broker does, send it with the OpenAI SDK to the loopback
    provider, and look for the values in what the server received."""
    from openai import OpenAI

    from app.identity import Tier
    from broker.types import CompletionRequest
    from orchestration.pii import presidio_redactor

    client = OpenAI(base_url=server.openai_base_url, api_key="sk-loopback-bench", max_retries=0)
    per_field: dict[str, list[int]] = {}
    leaks: list[str] = []
    for text, values in samples:
        request = CompletionRequest(
            system="", user_message=text, context=(), sensitivity=Tier.CONFIDENTIAL,
            user_hash="bench", request_id="bench",
        )  # fmt: skip
        sent, _ = presidio_redactor(request)
        server.reset()
        client.chat.completions.create(
            model="bench", messages=[{"role": "user", "content": sent.user_message}]
        )
        received = server.recorded[-1].body["messages"][-1]["content"]
        for field, value in values:
            counts = per_field.setdefault(field, [0, 0])
            counts[1] += 1
            if _leaked(value, field, received):
                counts[0] += 1
                leaks.append(f"{field}: {received}")
    total = sum(n for _, n in per_field.values())
    leaked = sum(k for k, _ in per_field.values())
    return {
        "values": total,
        "leaked": leaked,
        "recall": (total - leaked) / total,
        "per_field_recall": {f: round((n - k) / n, 3) for f, (k, n) in sorted(per_field.items())},
        "leaks": leaks[:15],
    }


# Names from some fifty countries in hand-written enterprise messages, in ten ways of
# mentioning a person (bench/data/pii/names/README.md). `dev` may be read while developing
# the recogniser; the judge splits are scored as numbers only, their texts never printed.
WRITTEN_NAMES = Path(__file__).parent / "data" / "pii" / "names"
WRITTEN_SPLITS = ("dev", "judge", "judge2", "judge3", "judge4", "judge5")  # later: blind when added


def written_names(split: str) -> list[tuple[str, list[tuple[str, str]]]]:
    """The split's messages, each with its listed names as `name` values."""
    rows = (WRITTEN_NAMES / split / "names.jsonl").read_text(encoding="utf-8").splitlines()
    return [
        (item["text"], [("name", name) for name in item["names"]])
        for item in map(json.loads, filter(str.strip, rows))
    ]


def written_benign(split: str) -> list[str]:
    rows = (WRITTEN_NAMES / split / "benign.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(row)["text"] for row in rows if row.strip()]


def person_free_share(texts: list[str]) -> dict[str, Any]:
    """How many texts that name nobody get a PERSON span (any), and the spans."""
    from orchestration.pii import find_pii

    hits = [
        [text[s.start : s.end] for s in find_pii(text) if s.entity == "PERSON"] for text in texts
    ]
    return {
        "texts": len(texts),
        "with_person_span": sum(1 for h in hits if h),
        "share": sum(1 for h in hits if h) / len(texts),
        "found": [h for h in hits if h],
    }


def over_redaction(texts: list[str]) -> dict[str, Any]:
    """PII the analyser finds in text that holds none we know of (benign questions; the
    demo corpus's chunks hold fictional staff names, which are real finds)."""
    from orchestration.pii import find_pii

    hits: list[str] = []
    for text in texts:
        for span in find_pii(text):
            hits.append(f"{span.entity}: {text[span.start : span.end]}")
    return {"texts": len(texts), "spans": len(hits), "found": hits}


def run_pii(benign: list[str], n: int = 300) -> dict[str, Any]:
    from broker.loopback import LoopbackServer

    with LoopbackServer() as server:
        result = {
            "in_sample": _pii_recall(generated_pii(n), server),
            "held_out_templates": _pii_recall(
                generated_pii(n, seed=11, templates=HELD_OUT_TEMPLATES), server
            ),
            "other_locale_names": _pii_recall(
                generated_pii(
                    n,
                    seed=13,
                    templates=IN_SAMPLE_TEMPLATES[:2] + HELD_OUT_TEMPLATES[-1:],
                    locales=NAME_LOCALES,
                ),
                server,
            ),  # fmt: skip
            "over_redaction_benign": over_redaction(benign),
            **{
                f"written_names_{split}": _pii_recall(written_names(split), server)
                for split in WRITTEN_SPLITS
            },
            **{
                f"written_benign_{split}": person_free_share(written_benign(split))
                for split in WRITTEN_SPLITS
            },
        }
    # The judge splits are scored, never read: keep their figures, not their texts.
    for split in WRITTEN_SPLITS[1:]:
        result[f"written_names_{split}"]["leaks"] = []
        result[f"written_benign_{split}"]["found"] = []
    return result


def run_context() -> dict[str, Any]:
    """The context scan on labelled passages and on the demo corpus's chunks: the deployed
    rules, and the sentence-level similarity layer at a sweep of flag thresholds."""
    from orchestration.injection import Thresholds, rule_score, similarity_score
    from orchestration.normalize import inspection_views, normalize
    from retrieval.services import split_text

    thresholds = Thresholds.from_settings("GUARD_CONTEXT_THRESHOLDS")
    rows = [json.loads(line) for line in (DATA / "context_chunks.jsonl").read_text().splitlines()]
    demo = [
        piece
        for path in sorted((ROOT / "app" / "demo" / "corpus").glob("*.md"))
        for piece in split_text(path.read_text())
    ]

    def scores(text: str) -> tuple[float, float]:
        views = inspection_views(text, normalize(text).text)
        sim = similarity_score(list(views.semantic[:4]), anchors=thresholds.similarity_anchors)
        return rule_score(list(views.all))[0], sim

    attack = [scores(r["text"]) for r in rows if r["label"] == "attack"]
    benign = [scores(r["text"]) for r in rows if r["label"] == "benign"]
    corpus = [scores(t) for t in demo]
    flag_rules = thresholds.rules[0]

    def share(items: list[tuple[float, float]], at: float | None) -> float:
        hit = [r >= flag_rules or (at is not None and s >= at) for r, s in items]
        return round(sum(hit) / len(items), 3)

    sweep = {
        str(at): {
            "attacks_dropped": share(attack, at),
            "benign_dropped": share(benign, at),
            "demo_chunks_dropped": share(corpus, at),
        }
        for at in (0.6, 0.7, 0.8, 0.9)
    }
    return {
        "chunks": {"attack": len(attack), "benign": len(benign), "demo": len(corpus)},
        "similarity_enabled": thresholds.use_similarity,
        "rules_only": {
            "attacks_dropped": share(attack, None),
            "benign_dropped": share(benign, None),
            "demo_chunks_dropped": share(corpus, None),
        },
        "with_similarity_flag_at": sweep,
    }


def _detection_md(title: str, det: dict[str, Any]) -> list[str]:
    lines = [
        f"### {title}: {det['corpus']['attacks']} attacks, {det['corpus']['benign']} benign",
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
        "- per family (detected/total): "
        + ", ".join(f"{k} {v}" for k, v in det["families"].items()),
        "",
        "| step | p50 ms | p95 ms |",
        "|---|---|---|",
    ]
    for step, v in det["latency_ms"].items():
        lines.append(f"| {step} | {v['p50']} | {v['p95']} |")
    by_pass = " / ".join(f"{v:.1f}" for v in det["total_p95_by_pass"])
    lines += ["", f"Total over {len(det['total_p95_by_pass'])} passes; p95 per pass: {by_pass} ms."]
    return [*lines, ""]


PII_SETS = (
    "in_sample",
    "held_out_templates",
    "other_locale_names",
    *(f"written_names_{split}" for split in WRITTEN_SPLITS),
)


def _exposure_md(exp: dict[str, Any]) -> list[str]:
    benign, security, attack = exp["benign"], exp["benign_security"], exp["attack"]
    lines = [
        f"### Anomaly score: what the guard's signals do to a user (blind splits pooled: "
        f"{benign['lines']} benign lines, {security['lines']} of them about security; "
        f"{attack['lines']} attacks)",
        "",
        "Each turn drawn at random from the population; deployed weights, then every flag at "
        "the `flagged` weight.",
        "",
        "| users | turns in the window | throttled | locked | all flags full: throttled | locked |",
        "|---|---|---|---|---|---|",
    ]
    for name, group in (("benign", benign), ("benign, about security", security)):
        for turns in EXPOSURE_TURNS:
            d = group["deployed"]["reached"][str(turns)]
            f = group["every_flag_full_weight"]["reached"][str(turns)]
            lines.append(
                f"| {name} | {turns} | {d['throttled']:.2%} | {d['locked']:.2%} | "
                f"{f['throttled']:.2%} | {f['locked']:.2%} |"
            )
    for label, key in (("deployed", "deployed"), ("every flag full", "every_flag_full_weight")):
        a = attack[key]
        lines.append(
            f"\nAttacker ({label}): throttled after {a['turns_to_throttle']['median']:.0f} turns "
            f"(p95 {a['turns_to_throttle']['p95']:.0f}), locked after "
            f"{a['turns_to_lock']['median']:.0f} (p95 {a['turns_to_lock']['p95']:.0f})."
        )
    return [*lines, ""]


def markdown(result: dict[str, Any]) -> str:
    lines = [f"Machine: {machine.summary(result['machine'])}.", ""]
    lines += _detection_md("In-sample corpus", result["detection"])
    lines += _detection_md("Held-out split", result["held_out"])
    for n in blind_split_numbers():
        lines += _detection_md(f"Blind held-out split {n}", result[f"held_out_{n}"])
    lines += _exposure_md(result["anomaly_exposure"])
    lines += [
        "### PII redaction before an external provider (what the loopback server received)",
        "",
        "| set | values | recall | per kind |",
        "|---|---|---|---|",
    ]
    pii = result["pii"]
    for name in PII_SETS:
        r = pii[name]
        kinds = ", ".join(f"{k} {v:.1%}" for k, v in r["per_field_recall"].items())
        lines.append(f"| {name} | {r['values']} | **{r['recall']:.1%}** | {kinds} |")
    over = pii["over_redaction_benign"]
    lines += [
        "",
        "Messages that name nobody but get a PERSON span (hand-written, capitalised products, "
        "places, teams): "
        + ", ".join(
            f"{split} {pii[f'written_benign_{split}']['with_person_span']}/"
            f"{pii[f'written_benign_{split}']['texts']}"
            for split in WRITTEN_SPLITS
        )
        + ".",
        "",
        f"Over-redaction: {over['spans']} PII spans found in {over['texts']} benign questions "
        f"(in-sample + held-out): {over['found']}",
        "",
    ]
    ctx = result["context"]
    lines += [
        f"### Context scan: {ctx['chunks']['attack']} passages with a planted instruction, "
        f"{ctx['chunks']['benign']} benign passages, {ctx['chunks']['demo']} demo-corpus chunks "
        f"(similarity layer enabled: {ctx['similarity_enabled']})",
        "",
        "| configuration | attacks dropped | benign dropped | demo chunks dropped |",
        "|---|---|---|---|",
    ]
    rows = [("rules only (deployed)", ctx["rules_only"])]
    rows += [(f"rules + similarity >= {k}", v) for k, v in ctx["with_similarity_flag_at"].items()]
    for name, v in rows:
        lines.append(
            f"| {name} | {v['attacks_dropped']:.1%} | {v['benign_dropped']:.1%} | "
            f"{v['demo_chunks_dropped']:.1%} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    import django

    django.setup()
    rows = load_corpus()
    held_out = load_corpus(DATA / "heldout")
    # Each written by someone blind to the detector and committed before the detector
    # changes it is used to judge; their misses are counted, never printed (nobody tunes
    # on them). heldout2, heldout3, ... in order, each picked up from its directory.
    splits = {f"held_out_{n}": load_corpus(DATA / f"heldout{n}") for n in blind_split_numbers()}
    check_disjoint(rows + held_out + [row for split in splits.values() for row in split])
    benign = [r.text for r in rows + held_out if r.label == "benign"]
    blind = {}
    for name, split in splits.items():
        blind[name] = run_detection(split)
        blind[name]["missed"] = [{"family": m["family"]} for m in blind[name]["missed"]]
        blind[name]["false_blocks"] = []  # the rate stays in benign_blocked
    result = {
        "machine": machine.describe(),
        "detection": run_detection(rows),
        "held_out": run_detection(held_out),
        **blind,
        "anomaly_exposure": anomaly_exposure(list(blind.values())),
        "pii": run_pii(benign),
        "context": run_context(),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "guards.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "guards.md").write_text(markdown(result))
    print(markdown(result))
    for name in ("detection", "held_out"):  # never the blind splits' texts
        if result[name]["missed"]:
            print(f"{name} missed:", json.dumps(result[name]["missed"], indent=1))
        if result[name]["false_blocks"]:
            print(f"{name} benign blocked:", result[name]["false_blocks"])
    for name in PII_SETS:
        if name.startswith("written_names_judge"):  # scored, never read
            continue
        if result["pii"][name]["leaks"]:
            print(f"pii {name} leaks:", json.dumps(result["pii"][name]["leaks"], indent=1))


if __name__ == "__main__":
    main()
