"""Provider adapters over the official SDKs: `openai` (also `openai_compatible` via
`base_url`) and `anthropic`.

Every adapter: the SDK's own retries off (the broker runs the one retry loop), explicit
connect/read timeouts, the keyed user hash in the provider's user field, our request id
as a header, and SDK failures mapped to `ProviderCallFailed` with a kind and whether a
retry may help. Only the system prompt and the user's message are sent: never an email,
a name or the user id.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import openai

from app.identity import Tier
from app.secrets import resolve_secret
from broker.config import ProviderConfig
from broker.types import (
    Completion,
    CompletionRequest,
    ProviderCallFailed,
    StreamEvent,
    TokenDelta,
)

REQUEST_ID_HEADER = "X-Request-ID"
_MARKER = re.compile(r"\[(\d+)\]")


def cited_markers(text: str) -> tuple[int, ...]:
    seen: dict[int, None] = {}
    for match in _MARKER.finditer(text):
        seen.setdefault(int(match.group(1)), None)
    return tuple(seen)


def _retry_after(headers: Any) -> float | None:
    value = headers.get("retry-after") if headers is not None else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None  # an HTTP date: treat as "no hint"


def _map_status(status: int, headers: Any) -> ProviderCallFailed:
    if status == 429:
        return ProviderCallFailed(
            "rate_limited", retryable=True, retry_after_s=_retry_after(headers), status=status
        )
    if status >= 500 or status in {408, 409}:
        return ProviderCallFailed(
            "server_error", retryable=True, retry_after_s=_retry_after(headers), status=status
        )
    # 400/401/403/404…: this provider will not accept the call; another one may.
    return ProviderCallFailed("client_error", retryable=False, status=status)


def map_sdk_error(exc: BaseException) -> ProviderCallFailed:
    """Any failure of an SDK call → ProviderCallFailed (kind, retryable, Retry-After)."""
    if isinstance(exc, ProviderCallFailed):
        return exc
    if isinstance(exc, openai.APIStatusError | anthropic.APIStatusError):
        return _map_status(exc.status_code, exc.response.headers)
    if isinstance(
        exc, openai.APITimeoutError | anthropic.APITimeoutError | httpx2.TimeoutException
    ):
        return ProviderCallFailed("timeout", retryable=True)
    cause = exc.__cause__ or exc.__context__
    if isinstance(exc, httpx2.RemoteProtocolError | httpx2.ReadError) or isinstance(
        cause, httpx2.RemoteProtocolError | httpx2.ReadError
    ):
        return ProviderCallFailed("disconnect", retryable=True)
    if isinstance(
        exc, openai.APIConnectionError | anthropic.APIConnectionError | httpx2.ConnectError
    ):
        return ProviderCallFailed("connect", retryable=True)
    if isinstance(exc, httpx2.TransportError):
        return ProviderCallFailed("disconnect", retryable=True)
    if isinstance(
        exc,
        json.JSONDecodeError
        | openai.APIResponseValidationError
        | anthropic.APIResponseValidationError
        | httpx2.DecodingError,
    ):
        return ProviderCallFailed("malformed", retryable=True)
    if isinstance(exc, openai.APIError | anthropic.APIError):
        # e.g. an SSE `error` event inside an otherwise 200 stream
        return ProviderCallFailed("stream_error", retryable=True)
    return ProviderCallFailed(f"unexpected:{type(exc).__name__}", retryable=False)


class _SdkProvider:
    """What the adapters share: config-derived attributes and the stream wrapper."""

    kind = ""

    def __init__(self, config: ProviderConfig) -> None:
        self.config = config
        self.name = config.name
        self.model = config.model
        self.max_tier: Tier = config.max_tier
        self.timeout = openai.Timeout(config.timeout_s, connect=config.connect_timeout_s)
        self.api_key = resolve_secret(config.api_key_ref) if config.api_key_ref else "none"

    def _events(self, request: CompletionRequest) -> Iterator[tuple[str, int, int]]:
        raise NotImplementedError

    def stream(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        """Yield TokenDelta events, then one Completion; raise ProviderCallFailed."""
        parts: list[str] = []
        input_tokens = output_tokens = 0
        try:
            for text, in_tokens, out_tokens in self._events(request):
                input_tokens = in_tokens or input_tokens
                output_tokens = out_tokens or output_tokens
                if text:
                    parts.append(text)
                    yield TokenDelta(text)
        except Exception as exc:
            raise map_sdk_error(exc) from exc
        text = "".join(parts)
        if not text:
            # A 200 with no content (a non-SSE body, a stream cut before any event) is a
            # failure to answer, not an empty answer.
            raise ProviderCallFailed("empty_response", retryable=True)
        yield Completion(
            text=text,
            cited_markers=cited_markers(text),
            provider=self.name,
            model=self.model,
            # Servers that report no usage are charged an estimate (budgets need a number).
            input_tokens=input_tokens
            or len(request.system.split()) + len(request.user_message.split()),
            output_tokens=output_tokens or len(text.split()),
        )


class OpenAIProvider(_SdkProvider):
    """OpenAI chat completions (streaming) and embeddings; `openai_compatible` is the same
    wire protocol at another `base_url` (vLLM, Ollama, llama.cpp server)."""

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.kind = config.kind
        self.client = openai.OpenAI(
            api_key=self.api_key,
            base_url=config.base_url or None,
            max_retries=0,
            timeout=self.timeout,
        )

    def _events(self, request: CompletionRequest) -> Iterator[tuple[str, int, int]]:
        extra: dict[str, Any] = {}
        if self.kind == "openai":
            extra["stream_options"] = {"include_usage": True}
            extra["max_completion_tokens"] = request.max_tokens
        else:
            extra["max_tokens"] = request.max_tokens
        stream = self.client.chat.completions.create(
            model=self.model,
            messages=[
                {"role": "system", "content": request.system},
                {"role": "user", "content": request.user_message},
            ],
            stream=True,
            user=request.user_hash,
            extra_headers={REQUEST_ID_HEADER: request.request_id},
            **extra,
        )
        with stream:
            for chunk in stream:
                usage = chunk.usage
                text = ""
                if chunk.choices and chunk.choices[0].delta.content:
                    text = chunk.choices[0].delta.content
                yield (
                    text,
                    usage.prompt_tokens if usage else 0,
                    usage.completion_tokens if usage else 0,
                )

    def embed(self, texts: list[str], *, user_hash: str, request_id: str) -> list[list[float]]:
        try:
            response = self.client.embeddings.create(
                model=self.config.embedding_model or self.model,
                input=texts,
                user=user_hash,
                extra_headers={REQUEST_ID_HEADER: request_id},
            )
        except Exception as exc:
            raise map_sdk_error(exc) from exc
        return [list(item.embedding) for item in sorted(response.data, key=lambda d: d.index)]


class AnthropicProvider(_SdkProvider):
    """Anthropic messages (streaming)."""

    kind = "anthropic"

    def __init__(self, config: ProviderConfig) -> None:
        super().__init__(config)
        self.client = anthropic.Anthropic(
            api_key=self.api_key,
            base_url=config.base_url or None,
            max_retries=0,
            timeout=self.timeout,
        )

    def _events(self, request: CompletionRequest) -> Iterator[tuple[str, int, int]]:
        stream = self.client.messages.create(
            model=self.model,
            max_tokens=request.max_tokens,
            system=request.system,
            messages=[{"role": "user", "content": request.user_message}],
            metadata={"user_id": request.user_hash},
            extra_headers={REQUEST_ID_HEADER: request.request_id},
            stream=True,
        )
        input_tokens = 0
        with stream:
            for event in stream:
                if event.type == "message_start":
                    input_tokens = event.message.usage.input_tokens
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield event.delta.text, input_tokens, 0
                elif event.type == "message_delta":
                    yield "", input_tokens, event.usage.output_tokens


def build_provider(config: ProviderConfig) -> Any:
    """The adapter for one config entry (`local` is built by the broker itself)."""
    factories: dict[str, Callable[[ProviderConfig], Any]] = {
        "openai": OpenAIProvider,
        "openai_compatible": OpenAIProvider,
        "anthropic": AnthropicProvider,
    }
    return factories[config.kind](config)
