"""A generated 200-element architecture is reviewed (timing lives in
`make bench-design-review`, not here): every reported path is real and unbroken, and the
review is deterministic."""

from __future__ import annotations

import importlib.util
import random

from design_review.catalogue import default_catalogue
from design_review.model import architecture_from_dict
from design_review.report import report_to_dict
from design_review.review import review_architecture

from .conftest import ROOT


def _generate(n: int):
    spec = importlib.util.spec_from_file_location(
        "bench_dr", ROOT / "bench" / "bench_design_review.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.generate(n, random.Random(module.SEED))


def test_generated_200_element_architecture_review_is_sound_and_deterministic():
    document = _generate(200)
    arch = architecture_from_dict(document)
    assert len(arch.elements) == 200
    report = review_architecture(arch)
    assert report.findings
    assert report.attack_paths
    config = default_catalogue().attack_paths
    flows = {f.id: f for f in arch.flows}
    for path in report.attack_paths:
        assert 1 <= len(path.hops) <= config["max_hops"]
        assert path.hops[0].source == path.entry
        assert path.hops[-1].target == path.sink
        for before, after in zip(path.hops, path.hops[1:], strict=False):
            assert before.target == after.source
        for hop in path.hops:
            flow = flows[hop.flow]
            ends = (
                (flow.source, flow.target)
                if hop.direction == "request"
                else (flow.target, flow.source)
            )
            assert ends == (hop.source, hop.target)
            into = arch.elements[hop.target]
            key = f"{into.kind}@response" if hop.direction == "response" else into.kind
            breakers = config["breakers"].get(key, config["breakers"].get(into.kind, []))
            assert not (set(breakers) & (into.controls | flow.controls)), "a broken hop was walked"
            assert set(hop.missing_controls) == set(breakers)
    again = review_architecture(architecture_from_dict(_generate(200)))
    assert report_to_dict(again) == report_to_dict(report)
