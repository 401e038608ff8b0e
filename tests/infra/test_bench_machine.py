"""The benchmarks record the CPU their figures came from."""

from pathlib import Path

from bench.machine import cpu_facts, describe, summary

CPUINFO = """processor\t: 0
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni
processor\t: 1
model name\t: AMD EPYC 9B14
flags\t\t: fpu sse2 avx avx2 fma avx512f avx512_vnni
"""


def test_cpu_facts_reads_the_model_and_the_simd_extensions() -> None:
    facts = cpu_facts(CPUINFO)
    assert facts == {"cpu": "AMD EPYC 9B14", "simd": ["avx2", "fma", "avx512f", "avx512_vnni"]}


def test_a_cpu_without_vnni_says_so() -> None:
    facts = cpu_facts(CPUINFO.replace(" avx512f avx512_vnni", ""))
    assert facts["simd"] == ["avx2", "fma"]
    assert "avx512_vnni" not in summary({**facts, "cores": 2})


def test_describe_reads_a_cpuinfo_file(tmp_path: Path) -> None:
    path = tmp_path / "cpuinfo"
    path.write_text(CPUINFO)
    facts = describe(path)
    assert facts["cpu"] == "AMD EPYC 9B14"
    assert facts["cores"] >= 1
    assert facts["onnxruntime"]
    assert summary(facts).startswith("AMD EPYC 9B14, ")
