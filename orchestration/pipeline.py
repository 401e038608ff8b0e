"""One chat turn, top to bottom, as the steps of ARCHITECTURE.md.

`prepare_turn` runs steps 1–7 over a frozen `Turn`; each step returns a new Turn or raises
`InputRejected` / `Blocked`. Every allow/deny goes through `orchestration.policy`.
`answer_stream` runs steps 8–9 and yields the answer as it streams, released only after
output validation; the app records the turn and its audit event (step 10) in one
transaction. Guard decisions (flags, dropped context, redactions) are audited by the step
that makes them, with scores and reason codes, never text; a block raises `Blocked`
carrying those scores, and the edge records the refusal as one event.
"""

from __future__ import annotations

import time
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

from django.conf import settings

from app.identity import Principal, Tier
from audit.metrics import step_timer
from audit.models import EventType
from broker import services as broker
from broker.types import (
    Completion,
    CompletionRequest,
    ContextChunk,
    ProviderUnavailable,
    TokenDelta,
)
from orchestration import anomaly, policy, tools
from orchestration.errors import InputRejected
from orchestration.injection import Thresholds, Verdict, raised_by, scan
from orchestration.moderation import ModerationGate, ModerationVerdict, moderate
from orchestration.normalize import Views, inspection_views, normalize
from orchestration.output import CanaryLeak, OutputGuard
from orchestration.pii import pii_entities, pii_entities_in_background, presidio_redactor
from orchestration.prompts import (
    ANSWER_TEMPLATE_ID,
    ANSWER_TEMPLATE_VERSION,
    load_prompt,
    new_token,
    render_answer_prompt,
)
from orchestration.services import chunk_review_status, document_flag_create, guard_event_record
from orchestration.tool_loop import ToolActivity, with_tools
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
    views: Views | None = None  # renderings of the input for the detectors (step 1)
    input_verdict: Verdict | None = None
    pii: tuple[tuple[str, int], ...] | None = None  # type, count (None: not yet scanned)
    canary: str = ""
    spotlight: str = ""


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
    tools: tuple[ToolActivity, ...] = ()  # proposed calls and what became of them
    tool_context: tuple[ContextChunk, ...] = ()  # passages tools added (access record)


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
    # NFKC; invisible, bidi and tag characters removed. The detectors also see homoglyph-
    # folded text and anything decoded from base64/hex/rot13/leetspeak/tag characters.
    normalized = normalize(message).text.strip()
    if not normalized:
        raise InputRejected("empty_message", "The message is empty.")
    return replace(turn, message=normalized, views=inspection_views(message, normalized))


# 2 ---------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Screening:
    verdict: Verdict
    pii: dict[str, int]  # entity type -> count


def screen_input(message: str, thresholds: Thresholds, *, views: Views | None = None) -> Screening:
    """The injection scan and PII detection of one message, run concurrently: PII on a
    worker thread, the scan here. They are independent, so the turn waits for the slower
    of the two rather than their sum (measured by `make bench-guards`)."""
    pii = pii_entities_in_background(message)
    verdict = scan(message, thresholds, views=views)
    return Screening(verdict, pii.result())


def anomaly_kind(allowed: bool, verdict: Verdict, thresholds: Thresholds) -> str:
    """The anomaly signal of a turn the guard did not simply allow: a block, a flag, or a weak
    flag (its own, lower weight in ANOMALY_WEIGHTS). A flag is weak unless the intent rules or
    a classifier endpoint raised it, or the learned detector scored it at or above
    ANOMALY_STRONG_FLAG_LEARNED; on the spent splits a flag without these was more often a
    benign question than an attack (docs/BENCHMARKS.md, part AT)."""
    if not allowed:
        return "blocked"
    strong = raised_by(verdict, thresholds) & {"intent", "classifier"}
    learned = verdict.scores.get("learned", 0.0)
    if strong or learned >= settings.ANOMALY_STRONG_FLAG_LEARNED:
        return "flagged"
    return "flagged_weak"


def guard_input(turn: Turn) -> Turn:
    """Account state, then prompt-injection / jailbreak detection: allow, flag or block.
    PII detection for step 3 runs alongside the scan (`screen_input`)."""
    principal = turn.principal
    state = anomaly.state_of(principal.user_id)
    policy.chat_decision(principal, anomaly_state=state).enforce()
    if state == anomaly.State.THROTTLED and not anomaly.throttle_allows(principal.user_id):
        policy.Decision(False, policy.Reason.THROTTLED).enforce()
    thresholds = Thresholds.from_settings("GUARD_INPUT_THRESHOLDS")
    screening = screen_input(turn.message, thresholds, views=turn.views)
    verdict = screening.verdict
    decision = policy.input_decision(verdict)
    if decision.flagged and decision.allowed:
        guard_event_record(
            principal=principal,
            event_type=EventType.CHAT_FLAGGED,
            decision=verdict.action.label,
            reason=decision.reason.value,
            subject="guard:input",
            metadata=verdict.audit_metadata(),
        )
    if not decision.allowed or decision.flagged:
        anomaly.anomaly_signal(
            principal=principal, kind=anomaly_kind(decision.allowed, verdict, thresholds)
        )
    # A block is audited once, by the edge that handles the refusal, with these scores.
    decision.enforce(subject="guard:input", metadata=verdict.audit_metadata())
    anomaly.anomaly_signal(principal=principal, kind="turn")
    return replace(turn, input_verdict=verdict, pii=tuple(sorted(screening.pii.items())))


# 3 ---------------------------------------------------------------------------------------
def classify_and_redact_pii(turn: Turn) -> Turn:
    """Presidio on the user's turn: any PII makes the turn at least confidential. The
    values are redacted later, per provider, by the redactor handed to the broker. The
    detection itself already ran alongside step 2 when the turn came through it."""
    found = dict(turn.pii) if turn.pii is not None else pii_entities(turn.message)
    if not found:
        return replace(turn, pii=())
    return replace(
        turn,
        sensitivity=max(turn.sensitivity, Tier.CONFIDENTIAL),
        pii=tuple(sorted(found.items())),
    )


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
    anomaly.retrieval_breadth_record(
        principal=turn.principal, document_ids=sorted({c.document_id for c in context})
    )
    return replace(turn, context=context)


# 5 ---------------------------------------------------------------------------------------
def filter_context(turn: Turn) -> Turn:
    """Each retrieved chunk passes the policy: within the principal's clearance (defence in
    depth behind the SQL filter), not from a chunk under review, and not an indirect
    injection (same detector as the input, the context thresholds). A dropped injection
    flags its document for review; every drop is audited."""
    principal = turn.principal
    thresholds = Thresholds.from_settings("GUARD_CONTEXT_THRESHOLDS")
    readable = [c for c in turn.context if principal.may_read(c.tier)]
    review = chunk_review_status([c.chunk_id for c in readable]) if readable else {}
    kept: list[ContextChunk] = []
    for chunk in turn.context:
        status = review.get(chunk.chunk_id)
        verdict = None
        if principal.may_read(chunk.tier) and status is None:
            verdict = scan(chunk.text, thresholds)
        decision = policy.context_decision(
            principal,
            tier=chunk.tier,
            verdict=verdict,
            under_review=status in {"open", "confirmed"},
        )
        if decision.allowed:
            kept.append(chunk)
            continue
        if decision.reason is policy.Reason.CONTEXT_ABOVE_CLEARANCE:
            continue  # not this principal's to know about; retrieval's RLS is the record
        metadata = {"document": chunk.document_id, "chunk": chunk.chunk_id}
        if verdict is not None:
            metadata |= verdict.audit_metadata()
            document_flag_create(
                principal=principal,
                document_id=chunk.document_id,
                chunk_id=chunk.chunk_id,
                document_version=chunk.document_version,
                reason=decision.reason.value,
                scores=verdict.audit_metadata(),
            )
        guard_event_record(
            principal=principal,
            event_type=EventType.CONTEXT_DROPPED,
            decision="dropped",
            reason=decision.reason.value,
            subject=f"document:{chunk.document_id}",
            metadata=metadata,
        )
    # Markers stay as retrieved: the citation numbers the model sees are the chunk's own.
    return replace(turn, context=tuple(kept))


# 6 ---------------------------------------------------------------------------------------
def render_prompt(turn: Turn) -> Turn:
    """Render the versioned template with a fresh canary and spotlight marker; the user's
    text is not part of it (it goes in its own slot of the request)."""
    prompt = load_prompt(ANSWER_TEMPLATE_ID, ANSWER_TEMPLATE_VERSION)
    canary, marker = new_token("canary"), new_token("data")
    return replace(
        turn,
        system_prompt=render_answer_prompt(prompt, turn.context, canary=canary, marker=marker),
        template=prompt.ref,
        canary=canary,
        spotlight=marker,
    )


# 7 ---------------------------------------------------------------------------------------
def decide_policy(turn: Turn) -> Turn:
    """The turn's sensitivity is the highest tier it carries; some provider must be
    allowed to receive it, or the turn stops here."""
    policy.chat_decision(turn.principal, anomaly_state="").enforce()
    sensitivity = max([turn.sensitivity, *(c.tier for c in turn.context)])
    candidates = tuple(
        p.name
        for p in broker.allowed_providers(sensitivity, turn.principal.groups)
        if policy.provider_decision(sensitivity, p).allowed
    )
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
        with step_timer(step.__name__):
            turn = step(turn)
    return turn


# 8, 9 ------------------------------------------------------------------------------------
def answer_stream(turn: Turn) -> Iterator[TokenDelta | ToolActivity | Answer]:
    """Stream the broker's tokens through the output guard, then yield the validated
    Answer. A leaked canary stops the stream with `Blocked` before the leak is released.
    Tool calls the model proposes run in between (orchestration/tool_loop.py), each
    reported as a ToolActivity; the output moderation step judges the released text.

    The broker call is opened here, before the first event: a user over a limit
    (QuotaExceeded) or a turn no provider may take (ProviderUnavailable) raises from this
    call itself, so a streaming response can still answer 429 / 503 rather than start."""
    tool_rounds = max(0, int(settings.CHAT_TOOL_MAX_ROUNDS))
    request = CompletionRequest(
        system=turn.system_prompt,
        user_message=turn.message,
        context=turn.context,
        sensitivity=turn.sensitivity,
        user_hash=broker.user_hash(turn.principal.user_id),
        request_id=turn.principal.request_id,
        redactor=presidio_redactor,
        actor_id=turn.principal.user_id,
        groups=turn.principal.groups,
        tools=tools.specs_for(turn.principal, turn.sensitivity) if tool_rounds else (),
        allow_tool_calls=tool_rounds > 0,
    )
    return _guarded_events(turn, with_tools(turn, request, broker.complete_stream(request)))


def _guarded_events(
    turn: Turn, events: Iterator[TokenDelta | ToolActivity | Completion]
) -> Iterator[TokenDelta | ToolActivity | Answer]:
    guard = output_guard(turn)
    gate = ModerationGate.from_settings()
    activities: list[ToolActivity] = []
    added: list[ContextChunk] = []
    try:
        for event in events:
            if isinstance(event, ToolActivity):
                # Tool output is context: it may be echoed and its passages cited.
                activities.append(event)
                added.extend(event.chunks)
                guard.permitted_text += "".join(f"\n{c.text}" for c in event.chunks)
                guard.permitted_text += f"\n{event.data}" if event.data else ""
                guard.shown_markers |= {c.marker for c in event.chunks}
                yield event
            elif isinstance(event, Completion):
                tail = guard.finish()
                _moderation_enforce(turn, gate.feed(tail))
                if tail:
                    yield TokenDelta(tail)
                full = replace(turn, context=(*turn.context, *added))
                answer = validate_output(full, event, guard)
                _moderation_enforce(turn, moderate(answer.text, tier=_answer_tier(full, added)))
                yield replace(answer, tools=tuple(activities), tool_context=tuple(added))
            else:
                released = guard.feed(event.text)
                _moderation_enforce(turn, gate.feed(released))
                if released:
                    yield TokenDelta(released)
    except CanaryLeak:
        anomaly.anomaly_signal(principal=turn.principal, kind="blocked")
        policy.Decision(False, policy.Reason.OUTPUT_CANARY).enforce(
            event_type=EventType.OUTPUT_BLOCKED,
            subject="guard:output",
            metadata={"template": turn.template},
        )


def _answer_tier(turn: Turn, added: list[ContextChunk]) -> Tier:
    return max([turn.sensitivity, *(c.tier for c in added)])


def _moderation_enforce(turn: Turn, verdict: ModerationVerdict) -> None:
    """Withhold a flagged answer: `Blocked` carries what its one audit event records (the
    categories, never the text), written where the refusal is handled. An endpoint outage
    that did not block is audited here as degraded."""
    decision = policy.moderation_decision(verdict)
    metadata = {
        "backend": verdict.backend,
        "categories": list(verdict.categories),
        "degraded": verdict.degraded,
    }
    if not decision.allowed:
        # A user who keeps drawing harmful answers out of the model is a signal too.
        anomaly.anomaly_signal(principal=turn.principal, kind="moderation_blocked")
    if decision.allowed and verdict.degraded:
        guard_event_record(
            principal=turn.principal,
            event_type=EventType.CHAT_FLAGGED,
            decision="degraded",
            reason="moderation_unavailable",
            subject="guard:moderation",
            metadata=metadata,
        )
    decision.enforce(
        event_type=EventType.OUTPUT_BLOCKED, subject="guard:moderation", metadata=metadata
    )


def output_guard(turn: Turn) -> OutputGuard:
    permitted = "\n".join([turn.message, *(c.text for c in turn.context)])
    return OutputGuard(
        canary=turn.canary,
        permitted_text=permitted,
        shown_markers=frozenset(c.marker for c in turn.context),
    )


def validate_output(turn: Turn, completion: Completion, guard: OutputGuard | None = None) -> Answer:
    """The final answer: the text as the output guard released it (canary checked, secrets
    and unexpected PII redacted, foreign links removed), and citations limited to the
    chunks this principal was shown."""
    if guard is None:
        guard = output_guard(turn)
        guard.feed(completion.text)
        guard.finish()
    shown = {c.marker: c for c in turn.context}
    cited = tuple(shown[m] for m in completion.cited_markers if m in shown)
    dropped = tuple(m for m in completion.cited_markers if m not in shown)
    if guard.redactions or guard.removed_links:
        guard_event_record(
            principal=turn.principal,
            event_type=EventType.OUTPUT_REDACTED,
            decision="redacted",
            reason="output_redacted",
            subject="guard:output",
            metadata={"redactions": guard.redactions, "removed_links": guard.removed_links},
        )
    if dropped or guard.removed_citations:
        guard_event_record(
            principal=turn.principal,
            event_type=EventType.CHAT_FLAGGED,
            decision="flagged",
            reason="citation_not_shown",
            subject="guard:output",
            metadata={"dropped_citations": sorted(set(dropped) | set(guard.removed_citations))},
        )
    return Answer(
        text=guard.text,
        citations=cited,
        provider=completion.provider,
        model=completion.model,
        labels=completion.labels,
        input_tokens=completion.input_tokens,
        output_tokens=completion.output_tokens,
        latency_ms=int((time.monotonic() - turn.started) * 1000),
        dropped_citations=dropped,
    )
