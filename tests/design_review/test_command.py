"""`manage.py design_review`: formats, SARIF structure, exit codes, invalid input."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from jsonschema import Draft7Validator, FormatChecker

from .conftest import EXAMPLES

SARIF_SUBSET = json.loads(Path(__file__).with_name("sarif-2.1.0-subset.schema.json").read_text())


def _run(*args: str) -> tuple[str, int]:
    out = StringIO()
    try:
        call_command("design_review", *args, stdout=out, stderr=StringIO())
    except SystemExit as exc:
        return out.getvalue(), int(exc.code or 0)
    return out.getvalue(), 0


def _sarif_problems(log: dict) -> list[str]:
    validator = Draft7Validator(SARIF_SUBSET, format_checker=FormatChecker())
    return [f"{list(e.absolute_path)}: {e.message}" for e in validator.iter_errors(log)]


def test_production_example_exits_zero_and_naive_exits_with_critical():
    out, code = _run("--arch", str(EXAMPLES / "production.yaml"))
    assert code == 0
    assert "Highest open severity: **info**" in out
    _, code = _run("--arch", str(EXAMPLES / "naive-chatbot.yaml"))
    assert code == 4  # critical


@pytest.mark.parametrize(("fail_on", "expected"), [("critical", 4), ("high", 4), ("never", 0)])
def test_exit_code_threshold_is_configurable(fail_on, expected):
    _, code = _run("--arch", str(EXAMPLES / "in-between.yaml"), "--fail-on", fail_on)
    assert code == expected


def test_threshold_default_comes_from_settings(settings):
    settings.DESIGN_REVIEW_FAIL_ON = "never"
    assert _run("--arch", str(EXAMPLES / "naive-chatbot.yaml"))[1] == 0


def test_json_format_lists_findings_paths_and_the_five_answers():
    out, _ = _run("--arch", str(EXAMPLES / "naive-chatbot.yaml"), "--format", "json")
    data = json.loads(out)
    assert data["highest_severity"] == "critical"
    assert [q["id"] for q in data["questions"]] == ["q1", "q2", "q3", "q4", "q5"]
    assert data["attack_paths"]
    assert all(
        hop["missing_controls"] is not None for p in data["attack_paths"] for hop in p["hops"]
    )


@pytest.mark.parametrize("example", ["naive-chatbot", "production", "in-between"])
def test_sarif_output_is_structurally_valid(example):
    path = EXAMPLES / f"{example}.yaml"
    out, _ = _run("--arch", str(path), "--format", "sarif", "--fail-on", "never")
    log = json.loads(out)
    assert _sarif_problems(log) == []
    run = log["runs"][0]
    rules = run["tool"]["driver"]["rules"]
    for result in run["results"]:
        assert rules[result["ruleIndex"]]["id"] == result["ruleId"]
        region = result["locations"][0]["physicalLocation"]["region"]
        assert region["startLine"] >= 1
    if example == "production":
        # Accepted risks are reported as external suppressions, not dropped.
        suppressed = [r for r in run["results"] if r.get("suppressions")]
        assert {r["ruleId"] for r in suppressed} == {"DR-RT-02", "DR-RT-04"}
        assert len(suppressed) == len(run["results"])


def test_sarif_points_at_the_element_line():
    path = EXAMPLES / "naive-chatbot.yaml"
    out, _ = _run("--arch", str(path), "--format", "sarif", "--fail-on", "never")
    lines = path.read_text().splitlines()
    for result in json.loads(out)["runs"][0]["results"]:
        target = result["locations"][0]["logicalLocations"][0]["name"]
        line = result["locations"][0]["physicalLocation"]["region"]["startLine"]
        if result["locations"][0]["logicalLocations"][0]["kind"] != "architecture":
            assert f"id: {target}" in lines[line - 1]


def test_the_subset_schema_rejects_what_the_spec_forbids():
    assert _sarif_problems({"version": "2.1.0", "runs": [{"tool": {"driver": {}}}]})
    bad_level = {
        "version": "2.1.0",
        "runs": [
            {
                "tool": {"driver": {"name": "x"}},
                "results": [{"message": {"text": "m"}, "level": "critical"}],
            }
        ],
    }
    assert _sarif_problems(bad_level)
    assert _sarif_problems(
        {"version": "2.1.0", "runs": [{"tool": {"driver": {"name": "x"}}, "results": [{}]}]}
    )


def test_invalid_description_exits_64_with_the_path_and_problem(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        (EXAMPLES / "in-between.yaml").read_text().replace("kind: broker", "kind: brokr")
    )
    with pytest.raises(CommandError) as caught:
        call_command("design_review", "--arch", str(bad), stdout=StringIO())
    assert caught.value.returncode == 64
    assert "elements[6] (id=broker).kind: 'brokr' is not one of" in str(caught.value)


def test_arch_and_live_are_mutually_exclusive():
    with pytest.raises(CommandError):
        call_command("design_review", "--live", "--arch", "x.yaml", stdout=StringIO())
