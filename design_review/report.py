"""Render a review as JSON (a plain dict), Markdown, or SARIF 2.1.0."""

from __future__ import annotations

import re
from typing import Any

from design_review.catalogue import Catalogue, default_catalogue
from design_review.paths import AttackPath
from design_review.review import Finding, Report

SARIF_SCHEMA = "https://json.schemastore.org/sarif-2.1.0.json"
_SARIF_LEVEL = {"critical": "error", "high": "error", "medium": "warning", "low": "note"}
# GitHub code scanning orders security results by this number (CVSS-like).
_SECURITY_SEVERITY = {"critical": "9.5", "high": "8.0", "medium": "5.5", "low": "3.0"}
TOOL_NAME = "design_review"


def _finding_text(f: Finding) -> str:
    what = {"element": "element", "flow": "flow", "architecture": "architecture"}[f.target_type]
    return f"{f.rule.title} ({what} {f.target}). Mitigation: {f.rule.mitigation}"


def _path_text(p: AttackPath) -> str:
    return " -> ".join(p.elements)


def report_to_dict(report: Report) -> dict[str, Any]:
    return {
        "architecture": report.architecture,
        "catalogue_version": report.catalogue_version,
        "highest_severity": report.highest_severity(),
        "summary": {
            "open_findings": len(report.open_findings),
            "accepted_findings": len(report.findings) - len(report.open_findings),
            "attack_paths": len(report.attack_paths),
        },
        "findings": [
            {
                "rule": f.rule.id,
                "title": f.rule.title,
                "category": f.rule.category,
                "layer": f.rule.layer,
                "severity": f.severity,
                "likelihood": f.rule.likelihood,
                "impact": f.rule.impact,
                "target_type": f.target_type,
                "target": f.target,
                "mitigation": f.rule.mitigation,
                "check": f.rule.check,
                "owasp_llm": list(f.rule.owasp_llm),
                "cwe": list(f.rule.cwe),
                "accepted": None
                if f.accepted is None
                else {
                    "justification": f.accepted.justification,
                    "owner": f.accepted.owner,
                    "expires": f.accepted.expires,
                },
            }
            for f in report.findings
        ],
        "attack_paths": [
            {
                "entry": p.entry,
                "entry_class": p.entry_class,
                "sink": p.sink,
                "sink_class": p.sink_class,
                "severity": p.severity,
                "path": list(p.elements),
                "hops": [
                    {
                        "flow": h.flow,
                        "from": h.source,
                        "to": h.target,
                        "direction": h.direction,
                        "missing_controls": list(h.missing_controls),
                    }
                    for h in p.hops
                ],
            }
            for p in report.attack_paths
        ],
        "questions": [
            {
                "id": a.id,
                "question": a.question,
                "status": a.status,
                "facts": list(a.facts),
                "findings": list(a.findings),
            }
            for a in report.answers
        ],
        "expired_acceptances": [
            {"rule": r.rule, "target": r.target, "expires": r.expires}
            for r in report.expired_acceptances
        ],
    }


def report_to_markdown(report: Report) -> str:
    data = report_to_dict(report)
    s = data["summary"]
    out = [
        f"# Design review: {report.architecture}",
        "",
        f"Rules catalogue {report.catalogue_version}. Highest open severity: "
        f"**{data['highest_severity']}**. {s['open_findings']} open finding(s), "
        f"{s['accepted_findings']} accepted, {s['attack_paths']} unbroken attack path(s).",
        "",
        "## The five design-review questions",
        "",
    ]
    for a in report.answers:
        out.append(f"### {a.id}. {a.question}")
        out.append("")
        out.append(f"**{'Addressed' if a.status == 'addressed' else 'Gaps'}.**")
        out += [f"- {fact}" for fact in a.facts]
        if a.findings:
            out.append(f"- open findings: {', '.join(a.findings)}")
        out.append("")
    out += ["## Findings", ""]
    open_findings = report.open_findings
    if not open_findings:
        out += ["None open.", ""]
    else:
        out += ["| severity | rule | target | finding | mitigation |", "|---|---|---|---|---|"]
        for f in open_findings:
            cells = (f.severity, f.rule.id, f.target, f.rule.title, f.rule.mitigation)
            out.append("| " + " | ".join(cells) + " |")
        out.append("")
    accepted = [f for f in report.findings if f.accepted is not None]
    if accepted:
        out += ["## Accepted risks", ""]
        for f in accepted:
            assert f.accepted is not None  # noqa: S101 - narrowed by the filter above
            out.append(
                f"- {f.rule.id} on {f.target} ({f.severity}), owner {f.accepted.owner}, "
                f"until {f.accepted.expires}: {f.accepted.justification}"
            )
        out.append("")
    for r in report.expired_acceptances:
        out.append(f"- **Expired acceptance**: {r.rule} ({r.target or 'all'}) lapsed {r.expires}")
    out += ["## Attack paths", ""]
    if not report.attack_paths:
        out += ["No untrusted entry reaches a sensitive sink through unbroken hops.", ""]
    for p in report.attack_paths:
        out.append(
            f"- **{p.severity}** {p.entry_class} `{p.entry}` to {p.sink_class} `{p.sink}`: "
            f"{_path_text(p)}"
        )
        for h in p.hops:
            missing = ", ".join(h.missing_controls) or "no breaking control defined for this hop"
            out.append(f"  - {h.source} -> {h.target} ({h.direction}, {h.flow}): missing {missing}")
    out.append("")
    return "\n".join(out)


def _line_of(source_text: str | None, ident: str) -> int:
    if source_text:
        # Block style (`- id: web`) or flow style (`{id: web, ...}`).
        pattern = re.compile(
            rf"(?<![\w-])id:\s*['\"]?{re.escape(ident)}['\"]?(?=\s*[,}}]|\s*$)", re.M
        )
        match = pattern.search(source_text)
        if match:
            return source_text.count("\n", 0, match.start()) + 1
    return 1


def _location(uri: str, source_text: str | None, ident: str, kind: str) -> dict[str, Any]:
    return {
        "physicalLocation": {
            "artifactLocation": {"uri": uri},
            "region": {"startLine": _line_of(source_text, ident)},
        },
        "logicalLocations": [{"name": ident, "kind": kind}],
    }


def report_to_sarif(
    report: Report,
    *,
    artifact_uri: str,
    source_text: str | None = None,
    catalogue: Catalogue | None = None,
) -> dict[str, Any]:
    """SARIF 2.1.0: one run, rules from the catalogue (plus one per attack-path class),
    accepted risks as external suppressions, attack paths with a code flow of their hops."""
    catalogue = catalogue or default_catalogue()
    rules: list[dict[str, Any]] = []
    for rule in catalogue.rules:
        rules.append(
            {
                "id": rule.id,
                "name": re.sub(r"[^A-Za-z0-9]+", "", rule.title.title()),
                "shortDescription": {"text": rule.title},
                "fullDescription": {"text": rule.check},
                "help": {"text": rule.mitigation},
                "defaultConfiguration": {"level": _SARIF_LEVEL[rule.severity]},
                "properties": {
                    "security-severity": _SECURITY_SEVERITY[rule.severity],
                    "tags": ["security", rule.category, *rule.owasp_llm, *rule.cwe],
                },
            }
        )
    rule_index = {r["id"]: i for i, r in enumerate(rules)}
    path_rule_id = "DR-AP"
    rules.append(
        {
            "id": path_rule_id,
            "name": "UnbrokenAttackPath",
            "shortDescription": {"text": "Untrusted entry reaches a sensitive sink"},
            "fullDescription": {"text": "No hop on this path has a control that would break it."},
            "help": {"text": "Add one of the missing controls on any hop of the path."},
            "defaultConfiguration": {"level": "error"},
            "properties": {"security-severity": "8.0", "tags": ["security", "attack-path"]},
        }
    )
    results: list[dict[str, Any]] = []
    for f in report.findings:
        kind = "architecture" if f.target_type == "architecture" else f.target_type
        result: dict[str, Any] = {
            "ruleId": f.rule.id,
            "ruleIndex": rule_index[f.rule.id],
            "level": _SARIF_LEVEL[f.severity],
            "message": {"text": _finding_text(f)},
            "locations": [_location(artifact_uri, source_text, f.target, kind)],
            "partialFingerprints": {"designReview/v1": f"{f.rule.id}:{f.target}"},
            "properties": {"severity": f.severity},
        }
        if f.accepted is not None:
            result["suppressions"] = [
                {
                    "kind": "external",
                    "status": "accepted",
                    "justification": f"{f.accepted.justification} (owner {f.accepted.owner}, "
                    f"until {f.accepted.expires})",
                }
            ]
        results.append(result)
    for p in report.attack_paths:
        results.append(
            {
                "ruleId": path_rule_id,
                "ruleIndex": len(rules) - 1,
                "level": _SARIF_LEVEL[p.severity],
                "message": {
                    "text": f"{p.entry_class} {p.entry} reaches {p.sink_class} {p.sink}: "
                    f"{_path_text(p)}"
                },
                "locations": [_location(artifact_uri, source_text, p.sink, "element")],
                "codeFlows": [
                    {
                        "threadFlows": [
                            {
                                "locations": [
                                    {
                                        "location": {
                                            **_location(artifact_uri, source_text, h.flow, "flow"),
                                            "message": {
                                                "text": f"{h.source} -> {h.target}: missing "
                                                + (", ".join(h.missing_controls) or "any control")
                                            },
                                        }
                                    }
                                    for h in p.hops
                                ]
                            }
                        ]
                    }
                ],
                "partialFingerprints": {"designReview/v1": f"path:{p.entry}:{p.sink}"},
                "properties": {"severity": p.severity},
            }
        )
    return {
        "$schema": SARIF_SCHEMA,
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": TOOL_NAME,
                        "version": catalogue.version,
                        "rules": rules,
                    }
                },
                "automationDetails": {"id": f"design_review/{report.architecture}"},
                "results": results,
            }
        ],
    }
