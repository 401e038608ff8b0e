"""Reviewing a generated 200-element architecture: validate + rules + attack paths.

    make bench-design-review        # ELEMENTS=200 RUNS=30 by default

Generates a deterministic architecture (seeded): a realistic mix of element kinds, about
three flows per element, random control subsets (so rules fire and attack paths exist),
then times each stage over RUNS repetitions in one process. No database is needed: the
review is pure Python over the description. Results: bench/results/design_review.json and
bench/results/design_review.md (a table to paste into docs/BENCHMARKS.md).
"""

from __future__ import annotations

import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from design_review.catalogue import default_catalogue  # noqa: E402
from design_review.model import architecture_from_dict, schema  # noqa: E402
from design_review.paths import find_attack_paths  # noqa: E402
from design_review.report import report_to_sarif  # noqa: E402
from design_review.review import review_architecture  # noqa: E402

ELEMENTS = int(os.environ.get("ELEMENTS", "200"))
RUNS = int(os.environ.get("RUNS", "30"))
SEED = 20261126
MIX = {  # share of each kind
    "actor": 0.05,
    "gateway": 0.05,
    "service": 0.2,
    "orchestrator": 0.1,
    "vector_store": 0.1,
    "datastore": 0.1,
    "model_provider": 0.1,
    "broker": 0.05,
    "tool": 0.1,
    "vault": 0.05,
    "log_sink": 0.05,
    "queue": 0.05,
}
TIERS = ["public", "internal", "confidential", "restricted"]


def generate(n: int, rng: random.Random) -> dict[str, Any]:
    controls = schema("architecture")["$defs"]["control"]["enum"]
    elements: list[dict[str, Any]] = []
    for kind, share in MIX.items():
        for i in range(max(1, round(n * share))):
            e: dict[str, Any] = {
                "id": f"{kind.replace('_', '-')}-{i}",
                "kind": kind,
                "zone": rng.choice(["internet", "dmz", "private", "private", "restricted"])
                if kind != "model_provider"
                else rng.choice(["private", "third_party"]),
                "tiers": sorted(rng.sample(TIERS, rng.randint(1, 4)), key=TIERS.index),
                "controls": sorted(rng.sample(controls, rng.randint(0, 12))),
            }
            if kind == "actor" and i % 3 == 0:
                e["untrusted_content"] = True
            if kind == "model_provider":
                e["hosting"] = "third_party" if e["zone"] == "third_party" else "self_hosted"
                e["zero_retention"] = rng.random() < 0.5
                e["max_tier"] = e["tiers"][-1]
            if kind == "tool":
                e["side_effects"] = rng.random() < 0.5
            if kind == "log_sink":
                e["role"] = rng.choice(["audit", "operational"])
            if kind in ("service", "orchestrator", "broker"):
                e["secrets"] = rng.choice(["vault", "env", "config"])
            elements.append(e)
    elements = elements[:n]
    ids = [e["id"] for e in elements]
    flows = []
    for i in range(n * 3):
        a, b = rng.sample(ids, 2)
        flows.append(
            {
                "id": f"f{i}",
                "from": a,
                "to": b,
                "protocol": rng.choice(["https", "postgres", "grpc", "in_process"]),
                "tls": rng.random() < 0.7,
                "authentication": rng.choice(["none", "session", "service_token", "api_key"]),
                "identity_propagated": rng.random() < 0.5,
                "tiers": sorted(rng.sample(TIERS, rng.randint(1, 3)), key=TIERS.index),
            }
        )
    return {
        "version": 1,
        "name": f"generated-{n}",
        "practices": [],
        "elements": elements,
        "flows": flows,
    }


def _ms(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return round(statistics.median(ordered) * 1000, 2), round(p95 * 1000, 2)


def main() -> int:
    document = generate(ELEMENTS, random.Random(SEED))
    catalogue = default_catalogue()
    architecture_from_dict(document)  # warm: schema compiled, catalogue loaded
    stages: dict[str, list[float]] = {"validate": [], "review": [], "paths": [], "sarif": []}
    total: list[float] = []
    total_cpu: list[float] = []
    report = None
    for _ in range(RUNS):
        c0, t0 = time.process_time(), time.perf_counter()
        arch = architecture_from_dict(document)
        t1 = time.perf_counter()
        report = review_architecture(arch, catalogue)  # rules + attack paths + answers
        t2, c2 = time.perf_counter(), time.process_time()
        find_attack_paths(arch, catalogue.attack_paths)
        t3 = time.perf_counter()
        report_to_sarif(report, artifact_uri="generated.yaml", catalogue=catalogue)
        t4 = time.perf_counter()
        stages["validate"].append(t1 - t0)
        stages["review"].append(t2 - t1)
        stages["paths"].append(t3 - t2)
        stages["sarif"].append(t4 - t3)
        total.append(t2 - t0)
        total_cpu.append(c2 - c0)
    assert report is not None
    result: dict[str, Any] = {
        "elements": len(document["elements"]),
        "flows": len(document["flows"]),
        "rules": len(catalogue.rules),
        "runs": RUNS,
        "findings": len(report.findings),
        "attack_paths": len(report.attack_paths),
        "stages_ms": {k: dict(zip(("p50", "p95"), _ms(v), strict=True)) for k, v in stages.items()},
        "validate_plus_review_ms": dict(zip(("p50", "p95"), _ms(total), strict=True)),
        "validate_plus_review_cpu_ms": dict(zip(("p50", "p95"), _ms(total_cpu), strict=True)),
    }
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "design_review.json").write_text(json.dumps(result, indent=2))
    rows = [
        "| stage | p50 ms | p95 ms |",
        "|---|---|---|",
        *(
            f"| {name} | {v['p50']} | {v['p95']} |"
            for name, v in [
                ("load + schema validation + index", result["stages_ms"]["validate"]),
                ("review (45 rules, attack paths, answers)", result["stages_ms"]["review"]),
                ("  of which attack-path search alone", result["stages_ms"]["paths"]),
                ("SARIF rendering", result["stages_ms"]["sarif"]),
                ("**validate + review** (wall clock)", result["validate_plus_review_ms"]),
                ("**validate + review** (process CPU time)", result["validate_plus_review_cpu_ms"]),
            ]
        ),
    ]
    summary = (
        f"{result['elements']} elements, {result['flows']} flows, {result['rules']} rules, "
        f"{RUNS} runs: {result['findings']} findings, {result['attack_paths']} attack paths."
    )
    (out / "design_review.md").write_text(summary + "\n\n" + "\n".join(rows) + "\n")
    print(summary)
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
