"""What a benchmark ran on, recorded beside its figures.

Machines of the same size (two cores) are not the same speed: `make bench-guards` at one
commit measured the whole input guard's p95 at 44 ms on an earlier session's machine and at
95-100 ms on one with AVX2 only, on the same split (docs/BENCHMARKS.md, part N). The
quantised embedding's kernels use AVX-512 VNNI where the CPU has it. A latency figure without the
CPU it came from cannot be compared with another.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any

# The instruction-set extensions that change how fast int8 and fp32 matrix kernels run.
SIMD_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8")


def cpu_facts(cpuinfo: str) -> dict[str, Any]:
    """The CPU model and its SIMD extensions from the text of /proc/cpuinfo."""
    model = ""
    flags: set[str] = set()
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return {"cpu": model, "simd": [f for f in SIMD_FLAGS if f in flags]}


def describe(cpuinfo_path: Path = Path("/proc/cpuinfo")) -> dict[str, Any]:
    """CPU model, SIMD extensions, core count and the runtimes' versions."""
    text = cpuinfo_path.read_text() if cpuinfo_path.is_file() else ""
    facts = cpu_facts(text)
    facts["cpu"] = facts["cpu"] or platform.processor() or platform.machine()
    facts["cores"] = os.cpu_count() or 0
    facts["python"] = platform.python_version()
    try:
        import onnxruntime

        facts["onnxruntime"] = onnxruntime.__version__
    except ImportError:  # pragma: no cover - a locked dependency
        facts["onnxruntime"] = None
    return facts


def summary(facts: dict[str, Any]) -> str:
    """One line for a results table's heading."""
    simd = ", ".join(facts.get("simd") or []) or "none of " + ", ".join(SIMD_FLAGS)
    return f"{facts['cpu']}, {facts['cores']} cores, SIMD: {simd}"
