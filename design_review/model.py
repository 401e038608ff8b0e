"""The architecture description: loaded from YAML (or a dict), validated against the
shipped JSON Schema, then indexed for the rules and the attack-path search.

Errors name the path and the problem (`elements[2] (id=web).zone: 'moon' is not one of …`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError

SCHEMA_DIR = Path(__file__).resolve().parent / "schema"
TIERS = ("public", "internal", "confidential", "restricted")


def tier_rank(tier: str | None) -> int:
    """Rank of a tier name; -1 for none (so "no data" is below `public`)."""
    return TIERS.index(tier) if tier in TIERS else -1


def highest_tier(tiers: list[str] | tuple[str, ...]) -> str | None:
    return max(tiers, key=tier_rank) if tiers else None


class ArchitectureInvalid(ValueError):
    """The description does not match the format. `problems` are `path: problem` lines."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("invalid architecture description:\n  - " + "\n  - ".join(problems))
        self.problems = problems


@cache
def schema(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text())
    Draft202012Validator.check_schema(data)
    return data


def _inline_refs(node: Any, defs: dict[str, Any], seen: tuple[str, ...] = ()) -> Any:
    """Replace local `{"$ref": "#/$defs/x"}` by the definition itself (recursive ones are
    kept as references): jsonschema spends half its time resolving references otherwise."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/") and len(node) == 1:
            name = ref.removeprefix("#/$defs/")
            if name not in seen:
                return _inline_refs(defs[name], defs, (*seen, name))
            return node
        return {k: _inline_refs(v, defs, seen) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline_refs(v, defs, seen) for v in node]
    return node


@cache
def _validator(name: str) -> Draft202012Validator:
    data = schema(name)
    return Draft202012Validator(_inline_refs(data, data.get("$defs", {})))


def _path_of(error: ValidationError, document: Any) -> str:
    parts: list[str] = []
    node = document
    for key in error.absolute_path:
        if isinstance(key, int):
            label = f"[{key}]"
            try:
                node = node[key]
                if isinstance(node, Mapping) and isinstance(node.get("id"), str):
                    label += f" (id={node['id']})"
            except (IndexError, KeyError, TypeError):
                node = None
            parts.append(label)
        else:
            parts.append(("." if parts else "") + str(key))
            node = node.get(key) if isinstance(node, Mapping) else None
    return "".join(parts) or "(top level)"


def schema_problems(document: Any, schema_name: str) -> list[str]:
    """Every schema violation as `path: problem`, deepest first within a path, sorted."""
    problems = []
    for error in _validator(schema_name).iter_errors(document):
        # oneOf failures are noisy: name the best-matching branch's problem instead.
        best = error
        if error.context:
            best = min(error.context, key=lambda e: (len(e.context or ()), -len(e.path)))
        problems.append(f"{_path_of(best, document)}: {best.message}")
    return sorted(set(problems))


def _attribute(attrs: Mapping[str, Any], name: str) -> Any:
    """An element's or flow's attribute as rules see it: `tier` is the highest of `tiers`."""
    if name == "tier":
        return highest_tier(attrs.get("tiers", []))
    return attrs.get(name)


@dataclass(frozen=True, slots=True)
class Element:
    id: str
    kind: str
    zone: str
    attrs: Mapping[str, Any]
    controls: frozenset[str]

    def get(self, name: str) -> Any:
        return _attribute(self.attrs, name)


@dataclass(frozen=True, slots=True)
class Flow:
    id: str
    source: str
    target: str
    attrs: Mapping[str, Any]
    controls: frozenset[str]

    def get(self, name: str) -> Any:
        return _attribute(self.attrs, name)


@dataclass(frozen=True, slots=True)
class AcceptedRisk:
    rule: str
    target: str | None
    justification: str
    owner: str
    expires: str


@dataclass(slots=True)
class Architecture:
    name: str
    practices: frozenset[str]
    elements: dict[str, Element]
    flows: list[Flow]
    accepted_risks: list[AcceptedRisk]
    source: dict[str, Any]
    inbound: dict[str, list[Flow]] = field(default_factory=dict)
    outbound: dict[str, list[Flow]] = field(default_factory=dict)

    def get(self, name: str) -> Any:
        if name == "practices":
            return sorted(self.practices)
        return self.source.get(name)


def architecture_from_dict(document: Any) -> Architecture:
    """Validate and index a description; raise ArchitectureInvalid listing every problem."""
    problems = schema_problems(document, "architecture")
    if problems:
        raise ArchitectureInvalid(problems)
    elements: dict[str, Element] = {}
    for i, raw in enumerate(document["elements"]):
        if raw["id"] in elements:
            problems.append(f"elements[{i}] (id={raw['id']}).id: duplicate element id")
            continue
        elements[raw["id"]] = Element(
            id=raw["id"],
            kind=raw["kind"],
            zone=raw["zone"],
            attrs=raw,
            controls=frozenset(raw.get("controls", ())),
        )
    flows: list[Flow] = []
    flow_ids: set[str] = set()
    for i, raw in enumerate(document["flows"]):
        where = f"flows[{i}] (id={raw['id']})"
        if raw["id"] in flow_ids:
            problems.append(f"{where}.id: duplicate flow id")
        flow_ids.add(raw["id"])
        for end in ("from", "to"):
            if raw[end] not in elements:
                problems.append(f"{where}.{end}: unknown element {raw[end]!r}")
        flows.append(
            Flow(
                id=raw["id"],
                source=raw["from"],
                target=raw["to"],
                attrs=raw,
                controls=frozenset(raw.get("controls", ())),
            )
        )
    risks = []
    for i, raw in enumerate(document.get("accepted_risks", [])):
        target = raw.get("target")
        if target is not None and target not in elements and target not in flow_ids:
            problems.append(f"accepted_risks[{i}].target: unknown element or flow {target!r}")
        risks.append(
            AcceptedRisk(
                rule=raw["rule"],
                target=target,
                justification=" ".join(raw["justification"].split()),
                owner=raw["owner"],
                expires=raw["expires"],
            )
        )
    if problems:
        raise ArchitectureInvalid(problems)
    arch = Architecture(
        name=document["name"],
        practices=frozenset(document.get("practices", ())),
        elements=elements,
        flows=flows,
        accepted_risks=risks,
        source=document,
    )
    arch.inbound = {e: [] for e in elements}
    arch.outbound = {e: [] for e in elements}
    for flow in flows:
        arch.outbound[flow.source].append(flow)
        arch.inbound[flow.target].append(flow)
    return arch


def load_architecture(path: Path) -> Architecture:
    try:
        document = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ArchitectureInvalid([f"{path}: cannot read ({exc.strerror})"]) from None
    except yaml.YAMLError as exc:
        raise ArchitectureInvalid([f"{path}: not valid YAML ({exc})"]) from None
    return architecture_from_dict(document)
