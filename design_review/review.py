"""Run the catalogue and the attack-path search over an architecture; answer the five
design-review questions of the pattern from the findings."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from design_review.catalogue import Catalogue, Rule, default_catalogue, severity_rank
from design_review.conditions import evaluate
from design_review.model import AcceptedRisk, Architecture, highest_tier, tier_rank
from design_review.paths import AttackPath, find_attack_paths

QUESTIONS = {
    "q1": "What data classification tiers interact with model outputs?",
    "q2": "Can user context be injected into prompts without validation?",
    "q3": "Are retrieval results filtered based on authorization scope?",
    "q4": "How is model provider dependency risk managed?",
    "q5": "What logging exists for post-incident analysis?",
}


@dataclass(frozen=True, slots=True)
class Finding:
    rule: Rule
    target_type: str
    target: str  # element or flow id; the architecture's name for architecture rules
    accepted: AcceptedRisk | None = None

    @property
    def severity(self) -> str:
        return self.rule.severity


@dataclass(frozen=True, slots=True)
class Answer:
    id: str
    question: str
    status: str  # "addressed" or "gaps"
    facts: tuple[str, ...]
    findings: tuple[str, ...]  # rule ids with open findings bearing on the question


@dataclass(slots=True)
class Report:
    architecture: str
    catalogue_version: str
    findings: list[Finding]
    attack_paths: list[AttackPath]
    answers: list[Answer]
    expired_acceptances: list[AcceptedRisk] = field(default_factory=list)

    @property
    def open_findings(self) -> list[Finding]:
        return [f for f in self.findings if f.accepted is None]

    def highest_severity(self) -> str:
        """Of open findings and attack paths; "info" when there are none."""
        severities = [f.severity for f in self.open_findings]
        severities += [p.severity for p in self.attack_paths]
        return max(severities, key=severity_rank, default="info")


def _targets(rule: Rule, arch: Architecture) -> list[tuple[str, object]]:
    if rule.target == "architecture":
        return [(arch.name, arch)]
    if rule.target == "flow":
        return [(f.id, f) for f in arch.flows]
    return [(e.id, e) for e in arch.elements.values() if not rule.kinds or e.kind in rule.kinds]


def _acceptance(
    rule: Rule, target: str, risks: list[AcceptedRisk], today: dt.date
) -> tuple[AcceptedRisk | None, AcceptedRisk | None]:
    """(valid acceptance, expired acceptance) for this finding."""
    for risk in risks:
        if risk.rule == rule.id and risk.target in (None, target):
            if dt.date.fromisoformat(risk.expires) >= today:
                return risk, None
            return None, risk
    return None, None


def _answers(arch: Architecture, findings: list[Finding], paths: list[AttackPath]) -> list[Answer]:
    open_by_q: dict[str, list[str]] = {q: [] for q in QUESTIONS}
    for f in findings:
        if f.accepted is None:
            for q in f.rule.questions:
                if f.rule.id not in open_by_q[q]:
                    open_by_q[q].append(f.rule.id)
    elements = arch.elements.values()
    providers = [e for e in elements if e.kind == "model_provider"]
    facts: dict[str, list[str]] = {q: [] for q in QUESTIONS}

    into_models = [f for f in arch.flows if arch.elements[f.target].kind == "model_provider"]
    tiers = sorted({t for f in into_models for t in f.get("tiers") or ()}, key=tier_rank)
    facts["q1"].append(
        "tiers sent to model providers: " + (", ".join(tiers) if tiers else "none declared")
    )
    for p in providers:
        ceiling = p.get("max_tier") or highest_tier(p.get("tiers") or []) or "undeclared"
        facts["q1"].append(
            f"{p.id}: {p.get('hosting') or 'hosting undeclared'}, max tier {ceiling}, "
            f"zero retention {'yes' if p.get('zero_retention') else 'no'}"
        )
    for o in (e for e in elements if e.kind == "orchestrator"):
        facts["q1"].append(
            f"{o.id}: output validation {'yes' if 'output_validation' in o.controls else 'NO'}"
        )

    for o in (e for e in elements if e.kind == "orchestrator"):
        present = [
            c
            for c in ("input_validation", "injection_detection", "prompt_templating")
            if c in o.controls
        ]
        facts["q2"].append(f"{o.id}: {', '.join(present) or 'no input controls'}")
    unguarded = [
        p
        for p in paths
        if p.entry_class == "internet actor"
        and any(arch.elements[h.target].kind == "orchestrator" for h in p.hops)
    ]
    facts["q2"].append(f"unbroken attack paths through an orchestrator: {len(unguarded)}")
    if unguarded and "DR-OR-02" not in open_by_q["q2"]:
        open_by_q["q2"].append("attack-path")

    for v in (e for e in elements if e.kind == "vector_store"):
        controls = [c for c in ("retrieval_acl", "row_level_security") if c in v.controls]
        carrying = all(f.get("identity_propagated") for f in arch.inbound[v.id])
        facts["q3"].append(
            f"{v.id}: {', '.join(controls) or 'NO authorization filter'}; user identity on "
            f"every flow into it: {'yes' if carrying else 'no'}"
        )
    if not any(e.kind == "vector_store" for e in elements):
        facts["q3"].append("no retrieval store in this architecture")

    brokers = [e for e in elements if e.kind == "broker"]
    facts["q4"].append(
        f"{len(providers)} model provider(s): "
        + ", ".join(f"{p.id} ({p.get('hosting') or '?'})" for p in providers)
    )
    facts["q4"].append(
        "broker: "
        + (
            ", ".join(
                f"{b.id} [{', '.join(sorted(b.controls & {'failover', 'sensitivity_routing', 'budget_limits'})) or 'no routing controls'}]"  # noqa: E501
                for b in brokers
            )
            if brokers
            else "none (application calls providers directly)"
        )
    )

    sinks = [e for e in elements if e.kind == "log_sink"]
    for s in sinks:
        facts["q5"].append(
            f"{s.id} ({s.get('role') or 'role undeclared'}): "
            + (", ".join(sorted(s.controls & {"tamper_evidence", "audit_log"})) or "no integrity")
        )
    if not sinks:
        facts["q5"].append("no log sink")
    auditing = sorted(e.id for e in elements if "audit_log" in e.controls)
    facts["q5"].append("elements writing audit events: " + (", ".join(auditing) or "none"))
    anomaly = sorted(e.id for e in elements if "anomaly_detection" in e.controls)
    facts["q5"].append("anomaly detection: " + (", ".join(anomaly) or "none"))

    return [
        Answer(
            id=q,
            question=text,
            status="gaps" if open_by_q[q] else "addressed",
            facts=tuple(facts[q]),
            findings=tuple(open_by_q[q]),
        )
        for q, text in QUESTIONS.items()
    ]


def review_architecture(
    arch: Architecture, catalogue: Catalogue | None = None, *, today: dt.date | None = None
) -> Report:
    catalogue = catalogue or default_catalogue()
    today = today or dt.datetime.now(dt.UTC).date()
    findings: list[Finding] = []
    expired: list[AcceptedRisk] = []
    for rule in catalogue.rules:
        for target_id, subject in _targets(rule, arch):
            if evaluate(rule.condition, subject, arch):  # type: ignore[arg-type]
                accepted, lapsed = _acceptance(rule, target_id, arch.accepted_risks, today)
                if lapsed is not None and lapsed not in expired:
                    expired.append(lapsed)
                findings.append(
                    Finding(rule=rule, target_type=rule.target, target=target_id, accepted=accepted)
                )
    findings.sort(key=lambda f: (-severity_rank(f.severity), f.rule.id, f.target))
    paths = find_attack_paths(arch, catalogue.attack_paths)
    paths.sort(key=lambda p: (-severity_rank(p.severity), p.entry, p.sink))
    return Report(
        architecture=arch.name,
        catalogue_version=catalogue.version,
        findings=findings,
        attack_paths=paths,
        answers=_answers(arch, findings, paths),
        expired_acceptances=expired,
    )
