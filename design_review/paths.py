"""Attack paths: from untrusted entry points to sensitive sinks, through hops that lack
the controls that would break them.

A walk follows flows in their direction; from an entry whose kind returns content (a
third-party model or tool, see `response_from`), it may first travel back along flows
(the response going up the call chain) and then forward again (an element acting on
that content). A hop is *broken* when the element it enters, or the flow itself, has
one of the catalogue's breakers for that element kind. Only unbroken hops are walked,
so every path reported is one no control on the way would stop; for each (entry, sink)
pair the shortest such path is reported (breadth-first, deterministic order), with the
controls missing at each hop. Cost: O(entries x (elements + flows)).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

from design_review.catalogue import severity_of
from design_review.conditions import evaluate
from design_review.model import Architecture, Element, Flow

FORWARD = "request"
RESPONSE = "response"


@dataclass(frozen=True, slots=True)
class Hop:
    flow: str
    source: str
    target: str
    direction: str
    missing_controls: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class AttackPath:
    entry: str
    entry_class: str
    sink: str
    sink_class: str
    severity: str
    hops: tuple[Hop, ...]

    @property
    def elements(self) -> tuple[str, ...]:
        return (self.entry, *(h.target for h in self.hops))


def _classify(
    element: Element, classes: list[dict[str, Any]], arch: Architecture
) -> dict[str, Any] | None:
    for cls in classes:
        if evaluate(cls["when"], element, arch):
            return cls
    return None


def _breakers(config: dict[str, Any], element: Element, direction: str) -> tuple[str, ...]:
    table = config["breakers"]
    if direction == RESPONSE and f"{element.kind}@response" in table:
        return tuple(table[f"{element.kind}@response"])
    return tuple(table.get(element.kind, ()))


def _missing(config: dict[str, Any], flow: Flow, into: Element, direction: str) -> tuple[str, ...]:
    """The breakers absent on an unbroken hop (all of them); () when the kind has none."""
    return tuple(b for b in _breakers(config, into, direction) if b not in into.controls)


def _is_broken(config: dict[str, Any], flow: Flow, into: Element, direction: str) -> bool:
    present = into.controls | flow.controls
    return any(b in present for b in _breakers(config, into, direction))


def find_attack_paths(arch: Architecture, config: dict[str, Any]) -> list[AttackPath]:
    entries = []
    sinks: dict[str, dict[str, Any]] = {}
    for element in arch.elements.values():
        entry_cls = _classify(element, config["entries"], arch)
        if entry_cls is not None:
            entries.append((element, entry_cls))
        sink_cls = _classify(element, config["sinks"], arch)
        if sink_cls is not None:
            sinks[element.id] = sink_cls
    response_kinds = set(config.get("response_from", ()))
    max_hops = int(config["max_hops"])
    # Whether each hop is broken depends only on the flow and direction: decide it once.
    open_forward: dict[str, list[Flow]] = {e: [] for e in arch.elements}
    open_backward: dict[str, list[Flow]] = {e: [] for e in arch.elements}
    for flow in arch.flows:
        if not _is_broken(config, flow, arch.elements[flow.target], FORWARD):
            open_forward[flow.source].append(flow)
        if not _is_broken(config, flow, arch.elements[flow.source], RESPONSE):
            open_backward[flow.target].append(flow)
    found: list[AttackPath] = []
    for entry, entry_cls in sorted(entries, key=lambda pair: pair[0].id):
        # State: (element id, may still travel backwards). Parents rebuild the path.
        may_reverse = entry.kind in response_kinds
        start = (entry.id, may_reverse)
        parent: dict[tuple[str, bool], tuple[tuple[str, bool], Flow, str] | None] = {start: None}
        depth = {start: 0}
        queue = deque([start])
        reached: dict[str, tuple[str, bool]] = {}
        while queue:
            state = queue.popleft()
            node, reverse_ok = state
            if node in sinks and node != entry.id and node not in reached:
                reached[node] = state
            if depth[state] >= max_hops:
                continue
            steps: list[tuple[Flow, str, str]] = [
                (f, f.target, FORWARD) for f in open_forward[node]
            ]
            if reverse_ok:
                steps += [(f, f.source, RESPONSE) for f in open_backward[node]]
            for flow, nxt, direction in steps:
                nstate = (nxt, reverse_ok and direction == RESPONSE)
                if nstate in parent:
                    continue
                parent[nstate] = (state, flow, direction)
                depth[nstate] = depth[state] + 1
                queue.append(nstate)
        for sink_id in sorted(reached):
            hops: list[Hop] = []
            cursor: tuple[str, bool] | None = reached[sink_id]
            while cursor is not None and parent[cursor] is not None:
                prev, flow, direction = parent[cursor]  # type: ignore[misc]
                into = arch.elements[cursor[0]]
                hops.append(
                    Hop(
                        flow=flow.id,
                        source=prev[0],
                        target=cursor[0],
                        direction=direction,
                        missing_controls=_missing(config, flow, into, direction),
                    )
                )
                cursor = prev
            hops.reverse()
            sink_cls = sinks[sink_id]
            found.append(
                AttackPath(
                    entry=entry.id,
                    entry_class=entry_cls["name"],
                    sink=sink_id,
                    sink_class=sink_cls["name"],
                    severity=severity_of(entry_cls["level"], sink_cls["level"]),
                    hops=tuple(hops),
                )
            )
    return found
