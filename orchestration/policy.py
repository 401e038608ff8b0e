"""The policy decision point: every allow/deny of the orchestration layer is answered here,
from declarative settings, with a reason code that is audited.

"May this principal do X with data of tier T through provider P / tool U?" Retrieval's
row-level security and the broker's routing stay as independent second checks.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from app.identity import Principal, Tier
from audit.models import EventType
from orchestration.errors import Blocked
from orchestration.injection import Action, Verdict
from orchestration.moderation import ModerationVerdict


class Reason(enum.StrEnum):
    ALLOWED = "allowed"
    SCOPE_MISSING = "scope_missing"
    ACCOUNT_LOCKED = "account_locked"
    THROTTLED = "throttled"
    INJECTION_BLOCKED = "injection_detected"
    INJECTION_FLAGGED = "injection_suspected"
    CONTEXT_ABOVE_CLEARANCE = "context_above_clearance"
    CONTEXT_INJECTION = "context_injection"
    CONTEXT_DOCUMENT_UNDER_REVIEW = "context_document_under_review"
    PROVIDER_TIER = "provider_tier_exceeded"
    PROVIDER_NOT_ZERO_RETENTION = "provider_not_zero_retention"
    TOOL_NOT_ALLOWED = "tool_not_allowed"
    TOOL_PERMISSION = "tool_permission_missing"
    TOOL_TIER = "tool_tier_exceeded"
    OUTPUT_CANARY = "output_canary_leak"
    OUTPUT_MODERATION = "output_moderation"
    MODERATION_UNAVAILABLE = "moderation_unavailable"


# What the user sees: short and non-revealing (never which rule or score decided).
USER_MESSAGES: dict[Reason, str] = {
    Reason.SCOPE_MISSING: "This credential may not use chat.",
    Reason.ACCOUNT_LOCKED: "Your account is locked pending review. Please contact support.",
    Reason.THROTTLED: "Too many requests. Please wait a moment and try again.",
    Reason.INJECTION_BLOCKED: "This request can't be processed. Please rephrase your question.",
    Reason.OUTPUT_CANARY: "The answer was withheld by a safety check. Please try again.",
    Reason.OUTPUT_MODERATION: "The answer was withheld by a content safety check.",
    Reason.MODERATION_UNAVAILABLE: (
        "The answer could not be safety-checked right now. Please try again shortly."
    ),
}


@dataclass(frozen=True, slots=True)
class Decision:
    allowed: bool
    reason: Reason
    flagged: bool = False

    def enforce(
        self,
        *,
        event_type: EventType = EventType.CHAT_BLOCKED,
        subject: str = "",
        metadata: dict[str, Any] | None = None,
    ) -> Decision:
        """Raise `Blocked` with the user-safe message when denied (carrying what its one
        audit event records); return self otherwise."""
        if not self.allowed:
            raise Blocked(
                self.reason.value,
                USER_MESSAGES.get(self.reason, "This request can't be processed."),
                event_type=event_type,
                subject=subject,
                metadata=metadata,
            )
        return self


ALLOW = Decision(True, Reason.ALLOWED)


def _deny(reason: Reason) -> Decision:
    return Decision(False, reason)


def chat_decision(principal: Principal, *, anomaly_state: str) -> Decision:
    """May this principal start a chat turn at all?"""
    if not principal.has_scope("chat"):
        return _deny(Reason.SCOPE_MISSING)
    if anomaly_state == "locked":
        return _deny(Reason.ACCOUNT_LOCKED)
    return ALLOW


def input_decision(verdict: Verdict) -> Decision:
    """The injection verdict on the user's input: block stops the turn, flag lets it pass
    (audited, counted by anomaly detection)."""
    if verdict.action is Action.BLOCK:
        return _deny(Reason.INJECTION_BLOCKED)
    if verdict.action is Action.FLAG:
        return Decision(True, Reason.INJECTION_FLAGGED, flagged=True)
    return ALLOW


def context_decision(
    principal: Principal, *, tier: Tier, verdict: Verdict | None, under_review: bool
) -> Decision:
    """May this retrieved chunk go into the prompt?"""
    if not principal.may_read(tier):
        return _deny(Reason.CONTEXT_ABOVE_CLEARANCE)
    if under_review:
        return _deny(Reason.CONTEXT_DOCUMENT_UNDER_REVIEW)
    if verdict is not None and verdict.action is not Action.ALLOW:
        return _deny(Reason.CONTEXT_INJECTION)
    return ALLOW


def provider_decision(tier: Tier, provider: Any) -> Decision:
    """May data of `tier` be sent to `provider`? Its `max_tier` caps it, and tiers listed in
    POLICY_ZERO_RETENTION_TIERS need a provider marked zero-retention (local ones are)."""
    if tier > Tier.parse(provider.max_tier):
        return _deny(Reason.PROVIDER_TIER)
    from broker.services import zero_retention_required  # the broker re-checks the same rule

    is_local = getattr(provider, "kind", "") == "local"
    if zero_retention_required(tier) and not (
        is_local or getattr(provider, "zero_retention", False)
    ):
        return _deny(Reason.PROVIDER_NOT_ZERO_RETENTION)
    return ALLOW


def tool_decision(principal: Principal, *, tool: str, tier: Tier) -> Decision:
    """May this principal call `tool` in a turn whose data is of `tier`? Only tools in the
    POLICY_TOOLS allow-list; each names the scope it needs and the highest tier it may see."""
    rule = settings.POLICY_TOOLS.get(tool)
    if rule is None:
        return _deny(Reason.TOOL_NOT_ALLOWED)
    if not principal.has_scope(rule["scope"]):
        return _deny(Reason.TOOL_PERMISSION)
    if tier > Tier.parse(rule["max_tier"]):
        return _deny(Reason.TOOL_TIER)
    return ALLOW


def moderation_decision(verdict: ModerationVerdict) -> Decision:
    """The output moderation verdict: a flagged answer is withheld; so is one the endpoint
    could not check when its tier fails closed (OUTPUT_MODERATION_FAIL_CLOSED_TIERS)."""
    if verdict.fail_closed:
        return _deny(Reason.MODERATION_UNAVAILABLE)
    if verdict.blocked:
        return _deny(Reason.OUTPUT_MODERATION)
    return ALLOW
