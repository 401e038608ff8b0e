"""What the broker is asked for and what it streams back."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

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


StreamEvent = TokenDelta | Completion


class Provider(Protocol):
    name: str
    model: str
    max_tier: Tier

    def stream(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        """Yield TokenDelta events, then exactly one Completion."""
        ...


class BrokerError(Exception):
    """Base class of the broker's errors."""


class ProviderUnavailable(BrokerError):
    """No provider allowed for this request's sensitivity is available."""
