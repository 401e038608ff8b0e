"""Fixtures for the design-review tests: the shipped examples, and small patches applied
to the recommended production description to make one rule fire."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml

# Connections as the owner and superuser roles, for changing what only they may change.
from tests.audit.conftest import owner_db, superuser_db

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "docs" / "examples"
RULE_FIXTURES = Path(__file__).with_name("rule_fixtures.yaml")


def load_example(name: str) -> dict[str, Any]:
    return yaml.safe_load((EXAMPLES / f"{name}.yaml").read_text())


def _find(items: list[dict[str, Any]], ident: str) -> dict[str, Any]:
    for item in items:
        if item["id"] == ident:
            return item
    raise KeyError(ident)


def apply_patch(document: dict[str, Any], ops: list[dict[str, Any]]) -> dict[str, Any]:
    """Apply fixture operations to a copy of an architecture document.

    ops: {remove_control: [element, control]}, {add_control: [element, control]},
    {set: [element, field, value]}, {set_flow: [flow, field, value]},
    {add_element: {...}}, {add_flow: {...}}, {remove_element: id} (and its flows),
    {remove_flow: id}, {set_top: [field, value]}, {remove_accepted: rule}.
    """
    doc = copy.deepcopy(document)
    for op in ops:
        ((name, arg),) = op.items()
        if name == "remove_control":
            element = _find(doc["elements"], arg[0])
            element["controls"] = [c for c in element.get("controls", []) if c != arg[1]]
        elif name == "add_control":
            element = _find(doc["elements"], arg[0])
            element["controls"] = sorted({*element.get("controls", []), arg[1]})
        elif name == "set":
            _find(doc["elements"], arg[0])[arg[1]] = arg[2]
        elif name == "set_flow":
            _find(doc["flows"], arg[0])[arg[1]] = arg[2]
        elif name == "add_element":
            doc["elements"].append(arg)
        elif name == "add_flow":
            doc["flows"].append(arg)
        elif name == "remove_element":
            doc["elements"] = [e for e in doc["elements"] if e["id"] != arg]
            doc["flows"] = [f for f in doc["flows"] if arg not in (f["from"], f["to"])]
        elif name == "remove_flow":
            doc["flows"] = [f for f in doc["flows"] if f["id"] != arg]
        elif name == "set_top":
            doc[arg[0]] = arg[1]
        elif name == "remove_accepted":
            doc["accepted_risks"] = [r for r in doc.get("accepted_risks", []) if r["rule"] != arg]
        else:
            raise ValueError(f"unknown fixture operation {name!r}")
    return doc


@pytest.fixture
def production() -> dict[str, Any]:
    return load_example("production")


@pytest.fixture(scope="session")
def rule_fixtures() -> dict[str, Any]:
    return yaml.safe_load(RULE_FIXTURES.read_text())


__all__ = ["owner_db", "superuser_db"]
