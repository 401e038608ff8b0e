"""The rules catalogue: YAML data validated against rules.schema.json on load."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import yaml

from design_review.model import schema_problems

RULES_DIR = Path(__file__).resolve().parent / "rules"
LEVELS = {"low": 1, "medium": 2, "high": 3}
SEVERITIES = ("info", "low", "medium", "high", "critical")


def severity_of(likelihood: str, impact: str) -> str:
    """Likelihood x impact (1-3 each): 9 critical, 6 high, 3-4 medium, 1-2 low."""
    score = LEVELS[likelihood] * LEVELS[impact]
    if score >= 9:
        return "critical"
    if score >= 6:
        return "high"
    if score >= 3:
        return "medium"
    return "low"


def severity_rank(severity: str) -> int:
    return SEVERITIES.index(severity)


class CatalogueInvalid(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Rule:
    id: str
    title: str
    category: str
    layer: str
    likelihood: str
    impact: str
    severity: str
    target: str
    kinds: tuple[str, ...]
    condition: dict[str, Any]
    mitigation: str
    check: str
    questions: tuple[str, ...]
    owasp_llm: tuple[str, ...]
    cwe: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Catalogue:
    version: str
    rules: tuple[Rule, ...]
    attack_paths: dict[str, Any]

    def rule(self, rule_id: str) -> Rule:
        for rule in self.rules:
            if rule.id == rule_id:
                return rule
        raise KeyError(rule_id)


def catalogue_from_dict(data: Any) -> Catalogue:
    problems = schema_problems(data, "rules")
    if problems:
        raise CatalogueInvalid("invalid rules catalogue:\n  - " + "\n  - ".join(problems))
    seen: set[str] = set()
    rules = []
    for raw in data["rules"]:
        if raw["id"] in seen:
            raise CatalogueInvalid(f"invalid rules catalogue: duplicate rule id {raw['id']}")
        seen.add(raw["id"])
        refs = raw["references"]
        rules.append(
            Rule(
                id=raw["id"],
                title=raw["title"],
                category=raw["category"],
                layer=raw.get("layer", ""),
                likelihood=raw["likelihood"],
                impact=raw["impact"],
                severity=severity_of(raw["likelihood"], raw["impact"]),
                target=raw["target"],
                kinds=tuple(raw.get("kinds", ())),
                condition=raw["condition"],
                mitigation=raw["mitigation"],
                check=raw["check"],
                questions=tuple(raw.get("questions", ())),
                owasp_llm=tuple(refs.get("owasp_llm", ())),
                cwe=tuple(refs.get("cwe", ())),
            )
        )
    return Catalogue(version=data["version"], rules=tuple(rules), attack_paths=data["attack_paths"])


@cache
def default_catalogue(path: Path = RULES_DIR / "catalogue.yaml") -> Catalogue:
    return catalogue_from_dict(yaml.safe_load(path.read_text()))
