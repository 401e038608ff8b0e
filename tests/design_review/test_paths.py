"""Attack-path search on small graphs whose answers are known."""

from __future__ import annotations

from typing import Any

from design_review.catalogue import default_catalogue
from design_review.model import architecture_from_dict
from design_review.paths import find_attack_paths


def _arch(elements: list[dict[str, Any]], flows: list[tuple[str, str]]) -> Any:
    return architecture_from_dict(
        {
            "version": 1,
            "name": "graph",
            "elements": elements,
            "flows": [{"id": f"{a}-{b}", "from": a, "to": b} for a, b in flows],
        }
    )


def _paths(arch: Any) -> list[Any]:
    return find_attack_paths(arch, default_catalogue().attack_paths)


USER = {"id": "user", "kind": "actor", "zone": "internet"}
GATEWAY = {"id": "gw", "kind": "gateway", "zone": "dmz"}


def _store(**kw: Any) -> dict[str, Any]:
    return {"id": "store", "kind": "vector_store", "zone": "private", "tiers": ["restricted"], **kw}


def _orch(ident: str = "orch", controls: list[str] | None = None) -> dict[str, Any]:
    return {"id": ident, "kind": "orchestrator", "zone": "private", "controls": controls or []}


def test_unprotected_chain_is_one_path_with_missing_controls_per_hop():
    arch = _arch(
        [USER, GATEWAY, _orch(), _store()], [("user", "gw"), ("gw", "orch"), ("orch", "store")]
    )
    (path,) = _paths(arch)
    assert path.elements == ("user", "gw", "orch", "store")
    assert path.sink_class == "restricted data"
    assert path.severity == "critical"  # internet (high) x restricted data (high)
    assert [h.missing_controls for h in path.hops] == [
        (),  # no control at a gateway breaks a semantic attack
        ("injection_detection",),
        ("retrieval_acl", "row_level_security"),
    ]


def test_a_breaking_control_on_any_hop_removes_the_path():
    flows = [("user", "gw"), ("gw", "orch"), ("orch", "store")]
    assert _paths(_arch([USER, GATEWAY, _orch(), _store(controls=["retrieval_acl"])], flows)) == []
    assert (
        _paths(_arch([USER, GATEWAY, _orch(controls=["injection_detection"]), _store()], flows))
        == []
    )


def test_a_control_on_the_flow_breaks_the_hop_too():
    arch = architecture_from_dict(
        {
            "version": 1,
            "name": "g",
            "elements": [USER, _orch(), _store()],
            "flows": [
                {"id": "a", "from": "user", "to": "orch"},
                {"id": "b", "from": "orch", "to": "store", "controls": ["row_level_security"]},
            ],
        }
    )
    assert _paths(arch) == []


def test_shortest_unbroken_route_is_reported_not_the_shorter_broken_one():
    elements = [USER, GATEWAY, _orch("guarded", ["injection_detection"]), _orch("open"), _store()]
    flows = [
        ("user", "guarded"),
        ("guarded", "store"),
        ("user", "gw"),
        ("gw", "open"),
        ("open", "store"),
    ]
    (path,) = _paths(_arch(elements, flows))
    assert path.elements == ("user", "gw", "open", "store")


def test_third_party_output_travels_back_up_the_call_chain_to_a_tool():
    provider = {
        "id": "llm",
        "kind": "model_provider",
        "zone": "third_party",
        "hosting": "third_party",
    }
    tool = {"id": "mailer", "kind": "tool", "zone": "private", "side_effects": True}
    broker = {
        "id": "broker",
        "kind": "broker",
        "zone": "private",
        "controls": ["per_user_authorization"],
    }
    flows = [("user", "orch"), ("orch", "broker"), ("broker", "llm"), ("orch", "mailer")]
    # Input is guarded, output is not: the model's reply reaches the tool.
    elements = [USER, _orch(controls=["injection_detection"]), broker, provider, tool]
    (path,) = _paths(_arch(elements, flows))
    assert path.entry == "llm"
    assert path.elements == ("llm", "broker", "orch", "mailer")
    assert [h.direction for h in path.hops] == ["response", "response", "request"]
    assert path.hops[0].missing_controls == ("output_validation",)
    # Validating output in the broker breaks it.
    broker_validating = {**broker, "controls": ["output_validation"]}
    assert (
        _paths(
            _arch(
                [USER, _orch(controls=["injection_detection"]), broker_validating, provider, tool],
                flows,
            )
        )
        == []
    )


def test_an_internet_actor_never_walks_against_the_flow_direction():
    vault = {"id": "vault", "kind": "vault", "zone": "restricted"}
    # The vault pushes to the orchestrator; nothing flows into the vault.
    assert _paths(_arch([USER, _orch(), vault], [("user", "orch"), ("vault", "orch")])) == []


def test_ingested_documents_are_an_entry_and_cycles_terminate():
    docs = {"id": "docs", "kind": "actor", "zone": "private", "untrusted_content": True}
    worker = {"id": "worker", "kind": "service", "zone": "private"}
    queue = {"id": "queue", "kind": "queue", "zone": "private"}
    audit = {"id": "audit", "kind": "log_sink", "zone": "private", "role": "audit"}
    flows = [("docs", "worker"), ("worker", "queue"), ("queue", "worker"), ("worker", "audit")]
    (path,) = _paths(_arch([docs, worker, queue, audit], flows))
    assert path.elements == ("docs", "worker", "audit")
    assert path.severity == "medium"  # documents (medium) x audit trail (medium)


def test_paths_longer_than_max_hops_are_not_followed():
    n = default_catalogue().attack_paths["max_hops"] + 1
    services = [{"id": f"s{i}", "kind": "service", "zone": "private"} for i in range(n)]
    chain = ["user", *(s["id"] for s in services), "store"]
    arch = _arch([USER, *services, _store()], list(zip(chain, chain[1:], strict=False)))
    assert _paths(arch) == []
