"""Descriptions and the catalogue are validated on load; errors name the path and problem."""

from __future__ import annotations

import copy

import pytest
import yaml

from design_review.catalogue import RULES_DIR, CatalogueInvalid, catalogue_from_dict
from design_review.conditions import ConditionError, evaluate
from design_review.model import ArchitectureInvalid, architecture_from_dict, load_architecture


def _problems(document) -> list[str]:
    with pytest.raises(ArchitectureInvalid) as caught:
        architecture_from_dict(document)
    return caught.value.problems


def test_unknown_kind_names_the_element_and_the_allowed_values(production):
    production["elements"][2]["kind"] = "firewall"
    (problem,) = _problems(production)
    assert problem.startswith("elements[2] (id=gateway).kind: 'firewall' is not one of")


def test_missing_required_field_and_bad_tier_are_both_reported(production):
    del production["elements"][0]["zone"]
    production["flows"][0]["tiers"] = ["secret"]
    problems = _problems(production)
    assert "elements[0] (id=users): 'zone' is a required property" in problems
    assert any(p.startswith("flows[0] (id=users-gateway).tiers[0]: 'secret'") for p in problems)


def test_unknown_control_and_unknown_attribute_are_refused(production):
    production["elements"][2]["controls"].append("magic")
    production["elements"][3]["colour"] = "blue"
    problems = _problems(production)
    assert any("elements[2] (id=gateway).controls[" in p and "'magic'" in p for p in problems)
    assert any(
        p.startswith("elements[3] (id=orchestrator): Additional properties") for p in problems
    )


def test_flow_to_an_unknown_element_and_duplicate_ids(production):
    production["flows"][0]["to"] = "ghost"
    production["elements"].append(copy.deepcopy(production["elements"][0]))
    problems = _problems(production)
    assert "flows[0] (id=users-gateway).to: unknown element 'ghost'" in problems
    assert any(p.endswith(".id: duplicate element id") for p in problems)


def test_accepted_risk_needs_a_real_justification_and_a_known_target(production):
    production["accepted_risks"][0]["justification"] = "ok"
    production["accepted_risks"][1]["target"] = "nowhere"
    problems = _problems(production)
    assert any(p.startswith("accepted_risks[0].justification:") for p in problems)
    # The target check runs once the schema passes.
    production["accepted_risks"][0]["justification"] = "a justification long enough to read"
    assert _problems(production) == ["accepted_risks[1].target: unknown element or flow 'nowhere'"]


def test_top_level_problems_and_unreadable_files(tmp_path):
    assert "(top level): 'version' is a required property" in _problems(
        {"name": "x", "elements": [], "flows": []}
    )
    bad = tmp_path / "bad.yaml"
    bad.write_text("elements: [unclosed")
    with pytest.raises(ArchitectureInvalid, match="not valid YAML"):
        load_architecture(bad)


def test_catalogue_condition_with_an_unknown_operator_is_refused():
    data = yaml.safe_load((RULES_DIR / "catalogue.yaml").read_text())
    data["rules"][0]["condition"] = {"eval": "__import__('os').system('true')"}
    with pytest.raises(CatalogueInvalid, match=r"rules\[0\] \(id=DR-GW-01\)\.condition"):
        catalogue_from_dict(data)


def test_condition_values_are_data_never_code(production):
    arch = architecture_from_dict(production)
    gateway = arch.elements["gateway"]
    # A value that looks like code is compared as a string, nothing runs.
    assert not evaluate({"field": "kind", "eq": "__import__('os').system('exit 1')"}, gateway, arch)
    assert evaluate({"field": "tier", "gte": "confidential"}, arch.elements["orchestrator"], arch)
    assert not evaluate({"field": "tier", "gte": "confidential"}, arch.elements["audit-log"], arch)
    with pytest.raises(ConditionError):
        evaluate({"source": {"true": True}}, gateway, arch)
