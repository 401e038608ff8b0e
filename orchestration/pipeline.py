"""One chat turn, top to bottom, as the steps of ARCHITECTURE.md.

`prepare_turn` runs steps 1–7 over a frozen `Turn`; each step returns a new Turn or raises
`InputRejected` / `Blocked`. `answer_stream` runs steps 8–9 and yields the answer as it
streams; the app records the turn and its audit event (step 10) in one transaction.
Steps marked "pass-through" are placeholders for controls built in later issues; each is
named for what it will do.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from django.conf import settings

from app.identity import Principal, Tier
from broker import services as broker
from broker.types import (
    Completion,
    CompletionRequest,
    ContextChunk,
    ProviderUnavailable,
    TokenDelta,
)
from orchestration.errors import Blocked, InputRejected
from orchestration.prompts import (
    ANSWER_TEMPLATE_ID,
    ANSWER_TEMPLATE_VERSION,
    load_template,
    render_system_prompt,
)
from retrieval import selectors as retrieval

_ALLOWED_CONTROL_CHARS = {"\n", "\t", "\r"}


@dataclass(frozen=True, slots=True)
class Turn:
    principal: Principal
    message: str
    sensitivity: Tier = Tier.PUBLIC
    context: tuple[ContextChunk, ...] = ()
    system_prompt: str = ""
    template: str = ""
    provider_candidates: tuple[str, ...] = ()
    started: float = field(default_factory=time.monotonic)


@dataclass(frozen=True, slots=True)
class Answer:
    text: str
    citations: tuple[ContextChunk, ...]
    provider: str
    model: str
    labels: tuple[str, ...]
    input_tokens: int
    output_tokens: int
    latency_ms: int
    dropped_citations: tuple[int, ...] = ()


Step = Callable[[Turn], Turn]


# 1 ---------------------------------------------------------------------------------------
def validate_input(turn: Turn) -> Turn:
    """Reject empty, over-long, or control-character input before anything else runs."""
    message = turn.message.strip()
    if not message:
        raise InputRejected("empty_message", "The message is empty.")
    limit = settings.CHAT_MAX_MESSAGE_CHARS
    if len(message) > limit:
        raise InputRejected("message_too_long", f"The message is longer than {limit} characters.")
    if any(unicodedata.category(ch) == "Cc" and ch not in _ALLOWED_CONTROL_CHARS for ch in message):
        raise InputRejected("invalid_characters", "The message contains control characters.")
    return replace(turn, message=message)


# 2 ---------------------------------------------------------------------------------------
def guard_input(turn: Turn) -> Turn:
    """Pass-through: prompt-injection and abuse detection (allow / flag / block)."""
    return turn


# 3 ---------------------------------------------------------------------------------------
def classify_and_redact_pii(turn: Turn) -> Turn:
    """Pass-through: Presidio PII detection and redaction; PII raises the turn's tier."""
    return turn


# 4 ---------------------------------------------------------------------------------------
def retrieve_context(turn: Turn) -> Turn:
    """ACL-filtered retrieval: only chunks this principal may read ever come back."""
    hits = retrieval.hybrid_search(turn.principal, turn.message, k=settings.RETRIEVAL_TOP_K)
    context = tuple(
        ContextChunk(
            marker=i,
            chunk_id=h.chunk_id,
            document_id=h.document_id,
            title=h.title,
            text=h.text,
            tier=h.tier,
            document_version=h.document_version,
        )
        for i, h in enumerate(hits, start=1)
    )
    return replace(turn, context=context)


# 5 ---------------------------------------------------------------------------------------
def filter_context(turn: Turn) -> Turn:
    """Drop any chunk above the principal's clearance (defence in depth behind the SQL
    filter). Pass-through for now: the indirect-injection scan of retrieved text."""
    kept = tuple(c for c in turn.context if turn.principal.may_read(c.tier))
    return replace(turn, context=kept)


# 6 ---------------------------------------------------------------------------------------
def render_prompt(turn: Turn) -> Turn:
    """Render the versioned template; the user's text goes only in its own slot."""
    template = load_template(ANSWER_TEMPLATE_ID, ANSWER_TEMPLATE_VERSION)
    return replace(
        turn,
        system_prompt=render_system_prompt(template, turn.context),
        template=f"{template.template_id}@v{template.version}",
    )


# 7 ---------------------------------------------------------------------------------------
def decide_policy(turn: Turn) -> Turn:
    """The turn's sensitivity is the highest tier it carries; some provider must be
    allowed to receive it, or the turn stops here."""
    if not turn.principal.has_scope("chat"):
        raise Blocked("scope_missing", "This credential may not use chat.")
    sensitivity = max([turn.sensitivity, *(c.tier for c in turn.context)])
    candidates = tuple(p.name for p in broker.allowed_providers(sensitivity, turn.principal.groups))
    if not candidates:
        # Never a silent downgrade: the turn stops (503) rather than going elsewhere.
        raise ProviderUnavailable(
            f"no model provider is approved for {sensitivity.label} data right now"
        )
    return replace(turn, sensitivity=sensitivity, provider_candidates=candidates)


PREPARE_STEPS: tuple[Step, ...] = (
    validate_input,
    guard_input,
    classify_and_redact_pii,
    retrieve_context,
    filter_context,
    render_prompt,
    decide_policy,
)


def prepare_turn(principal: Principal, message: str) -> Turn:
    turn = Turn(principal=principal, message=message)
    for step in PREPARE_STEPS:
        turn = step(turn)
    return turn


# 8, 9 ------------------------------------------------------------------------------------
def answer_stream(turn: Turn) -> Iterator[TokenDelta | Answer]:
    """Stream the broker's tokens, then yield the validated Answer."""
    request = CompletionRequest(
        system=turn.system_prompt,
        user_message=turn.message,
        context=turn.context,
        sensitivity=turn.sensitivity,
        user_hash=broker.user_hash(turn.principal.user_id),
        request_id=turn.principal.request_id,
        actor_id=turn.principal.user_id,
        groups=turn.principal.groups,
    )
    for event in broker.complete_stream(request):
        if isinstance(event, Completion):
            yield validate_output(turn, event)
        else:
            yield event


def validate_output(turn: Turn, completion: Completion) -> Answer:
    """Citations must be a subset of the chunks this principal was shown.
    Pass-through for now: PII/secret leak and canary checks, markdown sanitising."""
    shown = {c.marker: c for c in turn.context}
    cited = tuple(shown[m] for m in completion.cited_markers if m in shown)
    dropped = tuple(m for m in completion.cited_markers if m not in shown)
    return Answer(
        text=completion.text,
        citations=cited,
        provider=completion.provider,
        model=completion.model,
        labels=completion.labels,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        latency_ms=int((time.monotonic() - turn.started) * 1000),
        dropped_citations=dropped,
    )
