"""The policy decision point: each rule allows what it should and denies with a reason."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from app.identity import ALL_SCOPES, Principal, Tier
from orchestration import policy
from orchestration.errors import Blocked
from orchestration.injection import Action, Verdict
from orchestration.policy import Reason


def _principal(clearance: Tier = Tier.INTERNAL, scopes: frozenset[str] = ALL_SCOPES) -> Principal:
    return Principal(
        user_id=1, username="t", groups=(), group_ids=(), clearance=clearance,
        scopes=scopes, request_id="r",
    )  # fmt: skip


@dataclass
class _Provider:
    name: str
    kind: str
    max_tier: Tier
    zero_retention: bool = False


def test_chat_needs_the_chat_scope_and_an_unlocked_account():
    assert policy.chat_decision(_principal(), anomaly_state="normal").allowed
    no_scope = policy.chat_decision(_principal(scopes=frozenset({"search"})), anomaly_state="")
    assert no_scope.reason is Reason.SCOPE_MISSING
    assert not no_scope.allowed
    locked = policy.chat_decision(_principal(), anomaly_state="locked")
    assert locked.reason is Reason.ACCOUNT_LOCKED
    assert not locked.allowed


def test_enforce_raises_blocked_with_reason_code_and_safe_message():
    with pytest.raises(Blocked) as blocked:
        policy.chat_decision(_principal(), anomaly_state="locked").enforce()
    assert blocked.value.reason_code == "account_locked"
    assert blocked.value.user_message


@pytest.mark.parametrize(
    ("action", "allowed", "flagged"),
    [(Action.ALLOW, True, False), (Action.FLAG, True, True), (Action.BLOCK, False, False)],
)
def test_input_decision_follows_the_verdict(action, allowed, flagged):
    decision = policy.input_decision(Verdict(action, {"rules": 0.0}))
    assert (decision.allowed, decision.flagged) == (allowed, flagged)


def test_context_decision_denies_above_clearance_under_review_and_injected():
    p = _principal(Tier.INTERNAL)
    clean = Verdict(Action.ALLOW, {})
    assert policy.context_decision(p, tier=Tier.INTERNAL, verdict=clean, under_review=False).allowed
    assert (
        policy.context_decision(p, tier=Tier.CONFIDENTIAL, verdict=clean, under_review=False).reason
        is Reason.CONTEXT_ABOVE_CLEARANCE
    )
    assert (
        policy.context_decision(p, tier=Tier.PUBLIC, verdict=None, under_review=True).reason
        is Reason.CONTEXT_DOCUMENT_UNDER_REVIEW
    )
    flagged = Verdict(Action.FLAG, {"rules": 0.7})
    assert (
        policy.context_decision(p, tier=Tier.PUBLIC, verdict=flagged, under_review=False).reason
        is Reason.CONTEXT_INJECTION
    )


def test_provider_decision_caps_tier_and_requires_zero_retention_for_confidential(settings):
    settings.POLICY_ZERO_RETENTION_TIERS = ["confidential"]
    cloud = _Provider("cloud", "openai", Tier.CONFIDENTIAL)
    cloud_zr = _Provider("cloud-zr", "openai", Tier.CONFIDENTIAL, zero_retention=True)
    local = _Provider("local", "local", Tier.RESTRICTED)
    assert policy.provider_decision(Tier.INTERNAL, cloud).allowed
    assert policy.provider_decision(Tier.CONFIDENTIAL, cloud).reason is (
        Reason.PROVIDER_NOT_ZERO_RETENTION
    )
    assert policy.provider_decision(Tier.CONFIDENTIAL, cloud_zr).allowed
    assert policy.provider_decision(Tier.RESTRICTED, cloud_zr).reason is Reason.PROVIDER_TIER
    assert policy.provider_decision(Tier.RESTRICTED, local).allowed
    # A provider that does not say what it is gets no exemption.
    assert not policy.provider_decision(
        Tier.CONFIDENTIAL, _Provider("x", "", Tier.RESTRICTED)
    ).allowed


def test_tool_decision_uses_the_allow_list_scopes_and_tiers(settings):
    settings.POLICY_TOOLS = {
        "search_documents": {"scope": "search", "max_tier": "restricted"},
        "convert_units": {"scope": "chat", "max_tier": "internal"},
    }
    p = _principal()
    assert policy.tool_decision(p, tool="search_documents", tier=Tier.PUBLIC).allowed
    assert policy.tool_decision(p, tool="shell", tier=Tier.PUBLIC).reason is Reason.TOOL_NOT_ALLOWED
    no_search = _principal(scopes=frozenset({"chat"}))
    assert (
        policy.tool_decision(no_search, tool="search_documents", tier=Tier.PUBLIC).reason
        is Reason.TOOL_PERMISSION
    )
    assert (
        policy.tool_decision(p, tool="convert_units", tier=Tier.CONFIDENTIAL).reason
        is Reason.TOOL_TIER
    )
