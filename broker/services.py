"""The broker: every model call goes through here, and it alone picks the provider.

For each request it re-checks, itself, which configured providers may receive the data
(`max_tier` covers the request's tier; `zero_retention` for confidential and above;
the user's groups when the provider is restricted to some), enforces the user's rate and
token budget, then tries the allowed providers in priority order: one retry loop with
jittered backoff honouring Retry-After, a circuit breaker per provider in Redis, PII
redaction before any provider whose config says so. It never falls back to a provider
outside the allowed set: when none can answer, the turn stops with ProviderUnavailable.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Any

import redis
from django.conf import settings

from app.identity import Tier
from app.logs import get_logger
from audit.models import EventType
from audit.services import audit_record
from broker import limits
from broker.adapters import build_provider, cited_markers, map_sdk_error
from broker.config import ProviderConfig, load_providers_file, local_default
from broker.local import LocalProvider
from broker.types import (
    BudgetExceeded,
    Completion,
    CompletionRequest,
    Provider,
    ProviderCallFailed,
    ProviderUnavailable,
    RateLimited,
    StreamEvent,
    TokenDelta,
)

log = get_logger("broker")
_QUIET_SKIPS = frozenset({"breaker_open", "no_redactor"})
INTERRUPTED_MARKER = "\n\n[The answer was interrupted: the model provider failed mid-answer.]"


@dataclass(frozen=True, slots=True)
class ConfiguredProvider:
    """One provider from the configuration: its config and its adapter."""

    config: ProviderConfig
    adapter: Any

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def model(self) -> str:
        return self.config.model

    @property
    def max_tier(self) -> Tier:
        return self.config.max_tier

    @property
    def kind(self) -> str:
        return self.config.kind

    @property
    def zero_retention(self) -> bool:
        return self.config.zero_retention

    def stream(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        return self.adapter.stream(request)  # type: ignore[no-any-return]


def provider_configs() -> tuple[ProviderConfig, ...]:
    """The validated configuration: `LLM_PROVIDERS_FILE`, or the local provider alone."""
    if settings.LLM_PROVIDERS_FILE:
        return load_providers_file(settings.LLM_PROVIDERS_FILE)
    return (local_default(Tier.parse(settings.LOCAL_PROVIDER_MAX_TIER)),)


@lru_cache(maxsize=1)
def configured_providers() -> tuple[ConfiguredProvider, ...]:
    """Built once per process (SDK clients keep their connection pools)."""
    built = []
    for config in provider_configs():
        if config.kind == "local":
            adapter: Any = LocalProvider(name=config.name, max_tier=config.max_tier)
        else:
            adapter = build_provider(config)
        built.append(ConfiguredProvider(config, adapter))
    return tuple(built)


def user_hash(user_id: int) -> str:
    """A keyed hash of the user id: lets a provider tell users apart, reveals nobody."""
    key = hmac.new(settings.SECRET_KEY.encode(), b"provider-user-id", hashlib.sha256).digest()
    return hmac.new(key, str(user_id).encode(), hashlib.sha256).hexdigest()[:32]


def zero_retention_required(sensitivity: Tier) -> bool:
    """Whether data of this tier may only go to a zero-retention provider: one setting
    (`POLICY_ZERO_RETENTION_TIERS`), read by the policy decision point and re-checked here."""
    return sensitivity in {Tier.parse(t) for t in settings.POLICY_ZERO_RETENTION_TIERS}


def may_receive(config: ProviderConfig, sensitivity: Tier, groups: tuple[str, ...]) -> bool:
    """The routing rule, in one place."""
    if config.max_tier < sensitivity:
        return False
    if zero_retention_required(sensitivity) and not config.zero_retention:
        return False
    return not config.allowed_groups or bool(set(config.allowed_groups) & set(groups))


def allowed_providers(sensitivity: Tier, groups: tuple[str, ...] = ()) -> list[Provider]:
    """Providers that may receive data of this tier from a member of these groups, in
    priority order. A provider restricted to some groups needs the caller's groups."""
    return [p for p in configured_providers() if may_receive(p.config, sensitivity, groups)]


def usable_provider_count() -> int:
    """Configured providers whose circuit breaker is not open."""
    providers = configured_providers()
    try:
        return sum(limits.breaker_state(p.name) != limits.OPEN for p in providers)
    except redis.RedisError:
        return len(providers)


# --- audit ---------------------------------------------------------------------------------


def _audit(
    request: CompletionRequest,
    event_type: EventType,
    *,
    subject: str,
    decision: str,
    reason: str,
    metadata: dict[str, Any],
) -> None:
    """Identifiers and numbers only: never prompt text, never provider error text."""
    audit_record(
        event_type=event_type,
        actor_id=request.actor_id,
        request_id=request.request_id,
        subject=subject[:200],
        decision=decision,
        reason=reason[:64],
        metadata={"tier": request.sensitivity.label, **metadata},
    )


def _audit_transition(request: CompletionRequest, transition: limits.Transition | None) -> None:
    if transition is None:
        return
    log.warning(
        "provider_breaker",
        provider=transition.provider,
        before=transition.before,
        after=transition.after,
    )
    _audit(
        request,
        EventType.BREAKER_CHANGED,
        subject=f"provider:{transition.provider}",
        decision=transition.after,
        reason=f"{transition.before}->{transition.after}",
        metadata={"provider": transition.provider, "failures": transition.failures},
    )


# --- admission -----------------------------------------------------------------------------


def _admit_user(request: CompletionRequest) -> None:
    """Requests per minute, then tokens per day; each refusal audited, with Retry-After."""
    refusal = limits.user_admit(request.user_hash)
    if refusal is None:
        return
    reason, wait = refusal
    per_minute = reason == "requests_per_minute"
    _audit(
        request,
        EventType.RATE_LIMITED if per_minute else EventType.BUDGET_EXCEEDED,
        subject="broker",
        decision="deny",
        reason=reason,
        metadata={
            "limit": settings.BROKER_USER_REQUESTS_PER_MINUTE
            if per_minute
            else settings.BROKER_USER_DAILY_TOKENS,
            "retry_after": wait,
        },
    )
    if per_minute:
        raise RateLimited("Too many requests this minute.", retry_after_s=wait)
    raise BudgetExceeded("Today's model usage budget is spent.", retry_after_s=wait)


# --- PII restore over a stream -------------------------------------------------------------


class _Restorer:
    """Applies a redactor's restore function to streamed text. A placeholder may arrive
    split over several deltas, so text from the last unclosed `<` or `[` is held back
    until it closes (or grows past any plausible placeholder)."""

    _OPENERS = {"<": ">", "[": "]"}
    _MAX_HELD = 64

    def __init__(self, restore: Callable[[str], str]) -> None:
        self.restore = restore
        self.raw = ""
        self.released = 0  # chars of `raw` already restored and emitted

    def _safe_end(self) -> int:
        for opener, closer in self._OPENERS.items():
            at = self.raw.rfind(opener, self.released)
            if at != -1 and closer not in self.raw[at:] and len(self.raw) - at < self._MAX_HELD:
                return at
        return len(self.raw)

    def feed(self, text: str) -> str:
        self.raw += text
        end = self._safe_end()
        if end <= self.released:
            return ""
        out = self.restore(self.raw[self.released : end])
        self.released = end
        return out

    def flush(self) -> str:
        out = self.restore(self.raw[self.released :]) if len(self.raw) > self.released else ""
        self.released = len(self.raw)
        return out


def _identity(text: str) -> str:
    return text


# --- the call ------------------------------------------------------------------------------


def complete_stream(request: CompletionRequest) -> Iterator[StreamEvent]:
    """Stream a completion from the first allowed provider that answers.

    Raises at once (before any event): ProviderUnavailable when no configured provider
    may receive this request; RateLimited / BudgetExceeded when the user is over a limit.
    The returned stream raises ProviderUnavailable when every allowed provider failed
    before its first token; a failure after the first token ends the stream with an
    interruption marker and a Completion labelled "partial"."""
    candidates = [
        p
        for p in configured_providers()
        if may_receive(p.config, request.sensitivity, request.groups)
    ]
    if not candidates:
        _audit(
            request,
            EventType.PROVIDER_UNAVAILABLE,
            subject="broker",
            decision="deny",
            reason="no_allowed_provider",
            metadata={"groups_checked": bool(request.groups)},
        )
        raise ProviderUnavailable(
            f"no model provider is allowed to receive {request.sensitivity.label} data"
        )
    _admit_user(request)
    return _failover_stream(request, candidates)


def _backoff_s(attempt: int, failure: ProviderCallFailed) -> float | None:
    """How long to wait before retrying the same provider, or None to fail over now."""
    cap = float(settings.BROKER_MAX_RETRY_WAIT_S)
    if failure.retry_after_s is not None:
        return failure.retry_after_s if failure.retry_after_s <= cap else None
    base = float(settings.BROKER_RETRY_BASE_S) * (2 ** (attempt - 1))
    return random.uniform(0, min(cap, base))  # noqa: S311 - jitter, not a secret


def _failover_stream(
    request: CompletionRequest, candidates: list[ConfiguredProvider]
) -> Iterator[StreamEvent]:
    passed: list[dict[str, Any]] = []  # providers skipped or failed before this one answered
    max_attempts = max(1, int(settings.BROKER_MAX_ATTEMPTS))
    for provider in candidates:
        config = provider.config
        if config.redact_pii and request.redactor is None:
            passed.append({"provider": config.name, "reason": "no_redactor"})
            continue
        admission = limits.breaker_admit(config.name)
        _audit_transition(request, admission.transition)
        if not admission.admitted:
            passed.append({"provider": config.name, "reason": "breaker_open"})
            continue
        sent, restore = (
            request.redactor(request) if config.redact_pii and request.redactor else (request, None)
        )
        # The redactor must not change where the request may go.
        sent = replace(sent, sensitivity=request.sensitivity, groups=request.groups, redactor=None)
        attempt = 0
        while True:
            attempt += 1
            restorer = _Restorer(restore) if restore else None
            emitted: list[str] = []
            try:
                for event in provider.stream(sent):
                    if isinstance(event, TokenDelta):
                        text = restorer.feed(event.text) if restorer else event.text
                        if text:
                            emitted.append(text)
                            yield TokenDelta(text)
                        continue
                    if restorer:
                        tail = restorer.flush()
                        if tail:
                            emitted.append(tail)
                            yield TokenDelta(tail)
                        undo = restore or _identity
                        text = undo(event.text)
                        # A proposed call runs with the user's real values; the provider
                        # is shown its own placeholders again (`wire_arguments`).
                        calls = tuple(
                            replace(c, arguments=undo(c.arguments)) for c in event.tool_calls
                        )
                        event = replace(
                            event, text=text, cited_markers=cited_markers(text), tool_calls=calls
                        )
                    _on_success(request, provider, event, passed, clean=admission.clean)
                    yield event
                    return
            except Exception as exc:
                failure = map_sdk_error(exc)
                log.warning(
                    "provider_call_failed",
                    provider=config.name,
                    kind=failure.kind,
                    status=failure.status,
                    attempt=attempt,
                )
                transition = limits.breaker_failure(config.name)
                _audit_transition(request, transition)
                if emitted:
                    yield from _interrupted(request, provider, "".join(emitted), failure)
                    return
                wait = _backoff_s(attempt, failure) if failure.retryable else None
                # A breaker this failure just opened also ends this turn's retries.
                if wait is None or attempt >= max_attempts or transition is not None:
                    passed.append(
                        {"provider": config.name, "reason": failure.kind, "attempts": attempt}
                    )
                    break
                time.sleep(wait)
    _audit(
        request,
        EventType.PROVIDER_UNAVAILABLE,
        subject="broker",
        decision="deny",
        reason="all_allowed_providers_failed",
        metadata={"passed": passed},
    )
    raise ProviderUnavailable("no allowed model provider is available right now")


def _on_success(
    request: CompletionRequest,
    provider: ConfiguredProvider,
    completion: Completion,
    passed: list[dict[str, Any]],
    *,
    clean: bool,
) -> None:
    tokens = completion.input_tokens + completion.output_tokens
    transition = limits.breaker_success(
        provider.name, clean=clean, user_hash=request.user_hash, tokens=tokens
    )
    _audit_transition(request, transition)
    # Skips for an open breaker (its opening is audited) or a missing redactor (static
    # configuration) are logged, not audited once per turn; calls that failed are audited.
    failed = [p for p in passed if p["reason"] not in _QUIET_SKIPS]
    if failed:
        _audit(
            request,
            EventType.PROVIDER_FAILOVER,
            subject=f"provider:{provider.name}",
            decision="failover",
            reason=str(failed[0]["reason"]),
            metadata={"to": provider.name, "passed": passed},
        )
    if settings.BROKER_AUDIT_EVERY_CALL:
        _audit(
            request,
            EventType.PROVIDER_CALL,
            subject=f"provider:{provider.name}",
            decision="ok",
            reason="",
            metadata={
                "provider": provider.name,
                "model": provider.model,
                "input_tokens": completion.input_tokens,
                "output_tokens": completion.output_tokens,
            },
        )


def _interrupted(
    request: CompletionRequest,
    provider: ConfiguredProvider,
    partial: str,
    failure: ProviderCallFailed,
) -> Iterator[StreamEvent]:
    """After the first token the user has seen part of an answer: switching providers
    would splice two answers, so the stream ends here, marked as partial."""
    _audit(
        request,
        EventType.PROVIDER_CALL,
        subject=f"provider:{provider.name}",
        decision="partial",
        reason=failure.kind,
        metadata={"provider": provider.name, "partial_chars": len(partial)},
    )
    limits.token_budget_spend(request.user_hash, len(partial.split()))
    yield TokenDelta(INTERRUPTED_MARKER)
    text = partial + INTERRUPTED_MARKER
    yield Completion(
        text=text,
        cited_markers=cited_markers(partial),
        provider=provider.name,
        model=provider.model,
        output_tokens=len(partial.split()),
        labels=("partial",),
    )
