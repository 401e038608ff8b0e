"""Every rule of the catalogue fires on one fixture and stays silent on another; the
shipped examples review as documented."""

from __future__ import annotations

import pytest

from design_review.catalogue import default_catalogue, severity_of
from design_review.model import architecture_from_dict
from design_review.review import review_architecture

from .conftest import apply_patch, load_example

RULE_IDS = [rule.id for rule in default_catalogue().rules]


def _fired(document, rule_id):
    report = review_architecture(architecture_from_dict(document))
    return [f for f in report.findings if f.rule.id == rule_id]


def test_every_rule_has_a_fixture_and_every_fixture_a_rule(rule_fixtures):
    assert sorted(rule_fixtures) == sorted(RULE_IDS)


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_fires_on_its_fixture(rule_id, production, rule_fixtures):
    fixture = rule_fixtures.get(rule_id)
    assert fixture, f"{rule_id} has no fixture in rule_fixtures.yaml"
    assert _fired(apply_patch(production, fixture["fires"]), rule_id)


@pytest.mark.parametrize("rule_id", RULE_IDS)
def test_rule_is_silent_on_its_clean_fixture(rule_id, production, rule_fixtures):
    fixture = rule_fixtures.get(rule_id)
    assert fixture, f"{rule_id} has no fixture in rule_fixtures.yaml"
    assert not _fired(apply_patch(production, fixture.get("clean", [])), rule_id)


def test_catalogue_covers_every_owasp_llm_2025_item():
    covered = {ref for rule in default_catalogue().rules for ref in rule.owasp_llm}
    assert covered == {f"LLM{n:02d}:2025" for n in range(1, 11)}


def test_severity_is_likelihood_times_impact():
    assert severity_of("high", "high") == "critical"
    assert severity_of("medium", "high") == "high"
    assert severity_of("medium", "medium") == "medium"
    assert severity_of("low", "high") == "medium"
    assert severity_of("low", "medium") == "low"


def test_production_example_is_clean_apart_from_justified_accepted_risks(production):
    report = review_architecture(architecture_from_dict(production))
    assert report.open_findings == []
    assert report.attack_paths == []
    accepted = {(f.rule.id, f.target) for f in report.findings}
    assert accepted == {("DR-RT-02", "app-db"), ("DR-RT-04", "ingestion-vector-store")}
    assert report.highest_severity() == "info"
    assert all(a.status == "addressed" for a in report.answers)


def test_accepted_risk_stops_counting_once_it_expires(production):
    import datetime as dt

    arch = architecture_from_dict(production)
    report = review_architecture(arch, today=dt.date(2027, 7, 1))
    assert {f.rule.id for f in report.open_findings} == {"DR-RT-02", "DR-RT-04"}
    assert {r.rule for r in report.expired_acceptances} == {"DR-RT-02", "DR-RT-04"}
    assert report.highest_severity() == "high"


def test_naive_chatbot_has_many_findings_and_attack_paths():
    report = review_architecture(architecture_from_dict(load_example("naive-chatbot")))
    rules = {f.rule.id for f in report.open_findings}
    # The anti-patterns the issue names, each found.
    assert {
        "DR-MP-01",
        "DR-RT-03",
        "DR-MP-04",
        "DR-MP-03",
        "DR-SC-01",
        "DR-LG-01",
        "DR-RT-01",
    } <= rules
    assert len(report.open_findings) >= 30
    assert {(p.entry, p.sink) for p in report.attack_paths} >= {
        ("browser", "vectors"),
        ("browser", "email-tool"),
    }
    assert report.highest_severity() == "critical"
    assert all(a.status == "gaps" for a in report.answers)


def test_in_between_example_sits_between_the_two():
    naive = review_architecture(architecture_from_dict(load_example("naive-chatbot")))
    middle = review_architecture(architecture_from_dict(load_example("in-between")))
    assert 0 < len(middle.open_findings) < len(naive.open_findings)
    statuses = {a.id: a.status for a in middle.answers}
    assert statuses["q2"] == "gaps"
    assert statuses["q4"] == "gaps"


def test_the_documentation_lists_every_rule():
    from .conftest import ROOT

    text = (ROOT / "docs" / "design-review.md").read_text()
    assert [r for r in RULE_IDS if f"| {r} |" not in text] == []
