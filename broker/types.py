"""What the broker is asked for and what it streams back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from app.identity import Tier


@dataclass(frozen=True, slots=True)
class ContextChunk:
    """A retrieved chunk as the model sees it; `marker` is its citation number."""

    marker: int
    chunk_id: int
    document_id: int
    title: str
    text: str
    tier: Tier
    document_version: int = 1


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """A tool offered to the model: its name, what it does, and a JSON schema of its
    arguments. Only the tools the policy allows this principal are ever offered."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolCall:
    """A call the model proposed. `arguments` is the JSON text to run with (placeholders
    restored when the provider saw redacted text); `wire_arguments` is the text exactly as
    the provider sent it, echoed back to it in the next round."""

    call_id: str
    name: str
    arguments: str
    wire_arguments: str = ""


@dataclass(frozen=True, slots=True)
class ToolOutcome:
    """What the model is told about one call: the result as spotlighted data, or why the
    call was refused."""

    call_id: str
    content: str
    is_error: bool = False


@dataclass(frozen=True, slots=True)
class ToolRound:
    """One round of tool use: the assistant's text and proposed calls, then the outcomes."""

    text: str
    calls: tuple[ToolCall, ...]
    outcomes: tuple[ToolOutcome, ...]


class PiiRedactor(Protocol):
    """Supplied by orchestration; used by the broker before any provider whose config says
    `redact_pii`. Returns the request with PII replaced by typed placeholders and a function
    that restores the placeholders in that provider's output. The mapping lives only in the
    returned closure: never stored, logged or sent."""

    def __call__(
        self, request: CompletionRequest
    ) -> tuple[CompletionRequest, Callable[[str], str]]: ...


@dataclass(frozen=True, slots=True)
class CompletionRequest:
    system: str
    user_message: str
    context: tuple[ContextChunk, ...]
    sensitivity: Tier
    user_hash: str
    request_id: str
    max_tokens: int = 800
    redactor: PiiRedactor | None = None
    # Who is asking, for budgets, per-user model authorization and audit. The id never
    # leaves the process: providers see only `user_hash`.
    actor_id: int | None = None
    groups: tuple[str, ...] = ()
    # Tool use: the tools offered, earlier rounds (calls and outcomes, sent back in the
    # provider's wire format), and whether the model may propose another call.
    tools: tuple[ToolSpec, ...] = ()
    tool_rounds: tuple[ToolRound, ...] = ()
    allow_tool_calls: bool = True


@dataclass(frozen=True, slots=True)
class TokenDelta:
    text: str


@dataclass(frozen=True, slots=True)
class Completion:
    """The final event of a stream: the whole text and the markers the model cited."""

    text: str
    cited_markers: tuple[int, ...]
    provider: str
    model: str
    input_tokens: int = 0
    output_tokens: int = 0
    labels: tuple[str, ...] = field(default=())
    tool_calls: tuple[ToolCall, ...] = ()


StreamEvent = TokenDelta | Completion


class Provider(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def max_tier(self) -> Tier: ...

    def stream(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        """Yield TokenDelta events, then exactly one Completion."""
        ...


class BrokerError(Exception):
    """Base class of the broker's errors."""


class ProviderUnavailable(BrokerError):
    """No provider allowed for this request's sensitivity is available."""


class ProviderCallFailed(BrokerError):
    """One call to one provider failed. `kind` names the failure (never provider text);
    `retryable` says whether the same provider may be tried again; `retry_after_s` is the
    provider's Retry-After, when it sent one."""

    def __init__(
        self,
        kind: str,
        *,
        retryable: bool,
        retry_after_s: float | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(f"provider call failed: {kind}" + (f" ({status})" if status else ""))
        self.kind = kind
        self.retryable = retryable
        self.retry_after_s = retry_after_s
        self.status = status


class QuotaExceeded(BrokerError):
    """A per-user limit is reached; the caller may retry after `retry_after_s` seconds."""

    code = "quota_exceeded"

    def __init__(self, detail: str, *, retry_after_s: int) -> None:
        super().__init__(detail)
        self.retry_after_s = max(1, int(retry_after_s))


class BudgetExceeded(QuotaExceeded):
    """The user's token budget for the day is spent."""

    code = "budget_exceeded"


class RateLimited(QuotaExceeded):
    """The user sent more requests this minute than allowed."""

    code = "rate_limited"
