"""Tools the model may propose, and the one way they run.

The model only *proposes* a call (a name and JSON arguments). `tool_call` checks the name
against the registry and the policy allow-list, validates the arguments against the tool's
JSON schema, asks the policy whether this principal may use it at this tier, runs it with
the principal's own identity (never a service credential) under a timeout, audits the
outcome, and returns the result as a context passage for the next model call.
"""

from __future__ import annotations

import concurrent.futures
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

import jsonschema
from django.db import connection

from app.identity import Principal, Tier
from audit.models import EventType
from broker.types import ContextChunk, ToolSpec
from orchestration import policy
from orchestration.services import guard_event_record


@dataclass(frozen=True, slots=True)
class ToolOutput:
    """What a tool returns: its text for the model, and the document chunks it read (they
    become citable passages of the turn and join its access record)."""

    text: str
    chunks: tuple[ContextChunk, ...] = ()


@dataclass(frozen=True, slots=True)
class Tool:
    name: str
    description: str
    schema: dict[str, Any]
    run: Callable[[Principal, dict[str, Any]], str | ToolOutput]
    timeout_s: float = 5.0


@dataclass(frozen=True, slots=True)
class ToolResult:
    ok: bool
    reason: str
    passage: ContextChunk | None = None
    chunks: tuple[ContextChunk, ...] = ()


class ToolRefused(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- search_documents ------------------------------------------------------------------------
def _search_documents(principal: Principal, args: dict[str, Any]) -> ToolOutput:
    """The same ACL-filtered, RLS-backed search as the turn's own retrieval, as this
    principal: a document the principal cannot read never comes back."""
    from retrieval.selectors import hybrid_search

    hits = hybrid_search(principal, args["query"], k=int(args.get("k", 5)))
    chunks = tuple(
        ContextChunk(
            marker=0,
            chunk_id=h.chunk_id,
            document_id=h.document_id,
            title=h.title,
            text=h.text,
            tier=h.tier,
            document_version=h.document_version,
        )
        for h in hits
    )
    text = "\n\n".join(f"({h.title}) {h.text}" for h in hits) or "(no results)"
    return ToolOutput(text, chunks)


# -- convert_units ---------------------------------------------------------------------------
# Factors to a base unit per dimension; temperatures are affine and handled apart.
_UNITS: dict[str, tuple[str, Decimal]] = {
    "mm": ("length", Decimal("0.001")), "cm": ("length", Decimal("0.01")),
    "m": ("length", Decimal(1)), "km": ("length", Decimal(1000)),
    "in": ("length", Decimal("0.0254")), "ft": ("length", Decimal("0.3048")),
    "yd": ("length", Decimal("0.9144")), "mi": ("length", Decimal("1609.344")),
    "mg": ("mass", Decimal("0.000001")), "g": ("mass", Decimal("0.001")),
    "kg": ("mass", Decimal(1)), "t": ("mass", Decimal(1000)),
    "oz": ("mass", Decimal("0.028349523125")), "lb": ("mass", Decimal("0.45359237")),
    "ml": ("volume", Decimal("0.001")), "l": ("volume", Decimal(1)),
    "gal": ("volume", Decimal("3.785411784")),
    "b": ("data", Decimal(1)), "kb": ("data", Decimal(1000)), "mb": ("data", Decimal(10**6)),
    "gb": ("data", Decimal(10**9)), "tb": ("data", Decimal(10**12)),
    "kib": ("data", Decimal(1024)), "mib": ("data", Decimal(1024**2)),
    "gib": ("data", Decimal(1024**3)),
}  # fmt: skip
_TEMPERATURES = {"c", "f", "k"}


def _to_kelvin(value: Decimal, unit: str) -> Decimal:
    if unit == "c":
        return value + Decimal("273.15")
    if unit == "f":
        return (value - 32) * 5 / 9 + Decimal("273.15")
    return value


def _from_kelvin(value: Decimal, unit: str) -> Decimal:
    if unit == "c":
        return value - Decimal("273.15")
    if unit == "f":
        return (value - Decimal("273.15")) * 9 / 5 + 32
    return value


def convert(value: Decimal, source: str, target: str) -> Decimal:
    source, target = source.lower(), target.lower()
    if source in _TEMPERATURES and target in _TEMPERATURES:
        return _from_kelvin(_to_kelvin(value, source), target)
    if source not in _UNITS or target not in _UNITS:
        raise ToolRefused("tool_bad_arguments")
    (dim_a, factor_a), (dim_b, factor_b) = _UNITS[source], _UNITS[target]
    if dim_a != dim_b:
        raise ToolRefused("tool_bad_arguments")
    return value * factor_a / factor_b


def _convert_units(principal: Principal, args: dict[str, Any]) -> str:
    try:
        value = Decimal(str(args["value"]))
    except InvalidOperation:
        raise ToolRefused("tool_bad_arguments") from None
    result = convert(value, args["from_unit"], args["to_unit"])
    return f"{value} {args['from_unit']} = {result.normalize():f} {args['to_unit']}"


_UNIT_NAMES = sorted({*_UNITS, *_TEMPERATURES})
REGISTRY: dict[str, Tool] = {
    "search_documents": Tool(
        name="search_documents",
        description="Search the documents the user may read.",
        schema={
            "type": "object",
            "properties": {
                "query": {"type": "string", "minLength": 1, "maxLength": 500},
                "k": {"type": "integer", "minimum": 1, "maximum": 10},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
        run=_search_documents,
    ),
    "convert_units": Tool(
        name="convert_units",
        description="Convert a quantity between units of length, mass, volume, data, temperature.",
        schema={
            "type": "object",
            "properties": {
                "value": {"type": "number"},
                "from_unit": {"type": "string", "enum": _UNIT_NAMES},
                "to_unit": {"type": "string", "enum": _UNIT_NAMES},
            },
            "required": ["value", "from_unit", "to_unit"],
            "additionalProperties": False,
        },
        run=_convert_units,
        timeout_s=1.0,
    ),
}


def specs_for(principal: Principal, tier: Tier) -> tuple[ToolSpec, ...]:
    """The tools offered to the model in this turn: registered ones the policy allows this
    principal at this tier. A call to any other is still refused if the model makes one."""
    return tuple(
        ToolSpec(tool.name, tool.description, tool.schema)
        for tool in REGISTRY.values()
        if policy.tool_decision(principal, tool=tool.name, tier=tier).allowed
    )


def _run_with_identity(tool: Tool, principal: Principal, args: dict[str, Any]) -> ToolOutput:
    try:
        output = tool.run(principal, args)
        return output if isinstance(output, ToolOutput) else ToolOutput(output)
    finally:
        connection.close()  # the worker thread's own DB connection


_executor = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="tool")


def tool_refusal_record(*, principal: Principal, name: str, reason: str) -> None:
    """Audit a refused call (the name is the model's text: truncated, never run)."""
    guard_event_record(
        principal=principal,
        event_type=EventType.TOOL_REFUSED,
        decision="refused",
        reason=reason,
        subject=f"tool:{name[:60]}",
    )


def tool_call(
    *, principal: Principal, name: str, arguments: Any, tier: Tier, marker: int = 0
) -> ToolResult:
    """Validate, authorise, run and audit one proposed tool call."""
    tool = REGISTRY.get(name)
    try:
        if tool is None:
            raise ToolRefused(policy.Reason.TOOL_NOT_ALLOWED.value)
        decision = policy.tool_decision(principal, tool=name, tier=tier)
        if not decision.allowed:
            raise ToolRefused(decision.reason.value)
        try:
            jsonschema.validate(arguments, tool.schema)
        except jsonschema.ValidationError:
            raise ToolRefused("tool_bad_arguments") from None
        future = _executor.submit(_run_with_identity, tool, principal, dict(arguments))
        try:
            output: ToolOutput = future.result(timeout=tool.timeout_s)
        except concurrent.futures.TimeoutError:
            raise ToolRefused("tool_timeout") from None
    except ToolRefused as refused:
        tool_refusal_record(principal=principal, name=name, reason=refused.reason)
        return ToolResult(False, refused.reason)
    guard_event_record(
        principal=principal,
        event_type=EventType.TOOL_CALLED,
        decision="allowed",
        reason="allowed",
        subject=f"tool:{name}",
        metadata={
            "output_chars": len(output.text),
            "tier": tier.label,
            "documents": sorted({c.document_id for c in output.chunks}),
        },
    )
    passage = ContextChunk(
        marker=marker, chunk_id=0, document_id=0, title=f"tool:{name}", text=output.text, tier=tier
    )
    return ToolResult(True, "allowed", passage, output.chunks)
