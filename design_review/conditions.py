"""A small, safe evaluator for the rule conditions of the catalogue.

Conditions are data (nested mappings checked against rules.schema.json), never code: the
evaluator walks them with a fixed set of operators and reads only named attributes of
elements and flows. There is no `eval`, no attribute access by reflection, no imports.

Operators: all / any / not; has_control / lacks_control / lacks_all; field comparisons
(eq, ne, in, not_in, contains, lacks, gte, lt, exists — gte/lt compare data tiers by rank
when both sides are tiers); source / target (a flow's ends); inbound / outbound (some flow
into / out of an element matches); count (elements or flows matching, compared).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from design_review.model import TIERS, Architecture, Element, Flow, tier_rank

Subject = Element | Flow | Architecture


class ConditionError(ValueError):
    """A condition uses an operator in a context where it has no meaning."""


def _ordered(value: Any) -> Any:
    if isinstance(value, str) and value in TIERS:
        return tier_rank(value)
    return value


def _compare(actual: Any, op: str, expected: Any) -> bool:
    if op == "exists":
        return (actual is not None) == bool(expected)
    if op == "eq":
        return bool(actual == expected)
    if op == "ne":
        return bool(actual != expected)
    if op == "in":
        return actual in expected
    if op == "not_in":
        return actual not in expected
    if op == "contains":
        return isinstance(actual, list | tuple | frozenset) and expected in actual
    if op == "lacks":
        return not (isinstance(actual, list | tuple | frozenset) and expected in actual)
    if actual is None:
        return False
    left, right = _ordered(actual), _ordered(expected)
    if type(left) is not type(right):
        return False
    if op == "gte":
        return bool(left >= right)
    if op == "lt":
        return bool(left < right)
    raise ConditionError(f"unknown comparison {op!r}")


def _controls(subject: Subject) -> frozenset[str]:
    if isinstance(subject, Architecture):
        raise ConditionError("controls belong to elements and flows, not the architecture")
    return subject.controls


def evaluate(condition: Mapping[str, Any], subject: Subject, arch: Architecture) -> bool:
    """True when `condition` holds for `subject` (an element, a flow or the architecture)."""
    if "all" in condition:
        return all(evaluate(c, subject, arch) for c in condition["all"])
    if "any" in condition:
        return any(evaluate(c, subject, arch) for c in condition["any"])
    if "not" in condition:
        return not evaluate(condition["not"], subject, arch)
    if "true" in condition:
        return True
    if "has_control" in condition:
        return condition["has_control"] in _controls(subject)
    if "lacks_control" in condition:
        return condition["lacks_control"] not in _controls(subject)
    if "lacks_all" in condition:
        return not (_controls(subject) & set(condition["lacks_all"]))
    if "source" in condition or "target" in condition:
        if not isinstance(subject, Flow):
            raise ConditionError("source/target apply to flows only")
        end = subject.source if "source" in condition else subject.target
        inner = condition["source"] if "source" in condition else condition["target"]
        return evaluate(inner, arch.elements[end], arch)
    if "inbound" in condition or "outbound" in condition:
        if not isinstance(subject, Element):
            raise ConditionError("inbound/outbound apply to elements only")
        flows = (arch.inbound if "inbound" in condition else arch.outbound)[subject.id]
        inner = condition["inbound"] if "inbound" in condition else condition["outbound"]
        return any(evaluate(inner, f, arch) for f in flows)
    if "count" in condition:
        spec = condition["count"]
        pool: list[Element] | list[Flow] = (
            list(arch.elements.values()) if spec["of"] == "elements" else arch.flows
        )
        n = sum(1 for item in pool if evaluate(spec["where"], item, arch))
        (op,) = [k for k in spec if k not in ("of", "where")]
        return _compare(n, op, spec[op])
    if "field" in condition:
        (op,) = [k for k in condition if k != "field"]
        name = condition["field"]
        actual: Any
        if name == "kind" and not isinstance(subject, Architecture | Flow):
            actual = subject.kind
        elif name == "zone" and isinstance(subject, Element):
            actual = subject.zone
        elif name == "controls":
            actual = sorted(_controls(subject))
        else:
            actual = subject.get(name)
        return _compare(actual, op, condition[op])
    raise ConditionError(f"unknown condition {sorted(condition)!r}")
