"""Tools: allow-list, argument schema, permission, identity, timeout, audit."""

from __future__ import annotations

import time
from decimal import Decimal

import pytest

from app.identity import Tier
from audit.models import AuditEvent
from orchestration import tools
from orchestration.tools import Tool, tool_call

pytestmark = pytest.mark.django_db(transaction=False)


def test_convert_units_computes_without_eval(principal_of):
    result = tool_call(
        principal=principal_of("bob"),
        name="convert_units",
        arguments={"value": 5, "from_unit": "km", "to_unit": "mi"},
        tier=Tier.INTERNAL,
    )
    assert result.ok
    assert result.passage is not None
    assert result.passage.text.startswith("5 km = 3.10685")
    assert tools.convert(Decimal(100), "c", "f") == Decimal(212)
    assert AuditEvent.objects.filter(
        event_type="tool.called", subject="tool:convert_units"
    ).exists()


@pytest.mark.parametrize(
    "arguments",
    [
        {"value": "__import__('os').system('id')", "from_unit": "km", "to_unit": "mi"},
        {"value": 1, "from_unit": "km", "to_unit": "kg"},  # different dimensions
        {"value": 1, "from_unit": "km"},
        {"value": 1, "from_unit": "km", "to_unit": "mi", "extra": True},
    ],
)
def test_bad_arguments_are_refused_and_audited(principal_of, arguments):
    result = tool_call(
        principal=principal_of("bob"), name="convert_units", arguments=arguments, tier=Tier.PUBLIC
    )
    assert not result.ok
    assert result.reason == "tool_bad_arguments"
    assert AuditEvent.objects.filter(
        event_type="tool.refused", reason="tool_bad_arguments"
    ).exists()


def test_a_tool_outside_the_allow_list_is_refused(principal_of):
    result = tool_call(
        principal=principal_of("bob"), name="run_shell", arguments={"cmd": "id"}, tier=Tier.PUBLIC
    )
    assert not result.ok
    assert result.reason == "tool_not_allowed"
    assert AuditEvent.objects.filter(event_type="tool.refused", subject="tool:run_shell").exists()


def test_a_registered_tool_missing_from_the_policy_allow_list_is_refused(principal_of, settings):
    settings.POLICY_TOOLS = {"convert_units": {"scope": "chat", "max_tier": "restricted"}}
    result = tool_call(
        principal=principal_of("bob"),
        name="search_documents",
        arguments={"query": "travel"},
        tier=Tier.PUBLIC,
    )
    assert result.reason == "tool_not_allowed"


def test_search_needs_the_principals_search_scope(principal_of):
    result = tool_call(
        principal=principal_of("bob", scopes=frozenset({"chat"})),
        name="search_documents",
        arguments={"query": "vendor payments"},
        tier=Tier.PUBLIC,
    )
    assert not result.ok
    assert result.reason == "tool_permission_missing"


def test_search_runs_with_the_principals_identity(principal_of):
    from retrieval.models import Document

    finance_titles = set(
        Document.objects.filter(allowed_groups__name="finance").values_list("title", flat=True)
    )
    result = tool_call(
        principal=principal_of("bob"),
        name="search_documents",
        arguments={"query": "Q3 revenue forecast vendor payments", "k": 5},
        tier=Tier.INTERNAL,
    )
    assert result.ok
    assert result.passage is not None
    assert not any(f"({title})" in result.passage.text for title in finance_titles)


def _sleep_then_answer(principal: object, args: object) -> str:
    time.sleep(2)
    return "late"


def test_a_slow_tool_is_cut_off_by_its_timeout(principal_of, monkeypatch, settings):
    slow = Tool(
        name="slow",
        description="sleeps",
        schema={"type": "object"},
        run=_sleep_then_answer,
        timeout_s=0.2,
    )
    monkeypatch.setitem(tools.REGISTRY, "slow", slow)
    settings.POLICY_TOOLS = {"slow": {"scope": "chat", "max_tier": "restricted"}}
    result = tool_call(principal=principal_of("bob"), name="slow", arguments={}, tier=Tier.PUBLIC)
    assert not result.ok
    assert result.reason == "tool_timeout"
