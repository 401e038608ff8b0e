"""Provider adapters over the official SDKs: `openai` (also `openai_compatible` via
`base_url`) and `anthropic`.

Every adapter: the SDK's own retries off (the broker runs the one retry loop), explicit
connect/read timeouts, the keyed user hash in the provider's user field, our request id
as a header, and SDK failures mapped to `ProviderCallFailed` with a kind and whether a
retry may help. Only the system prompt, the user's message and earlier tool rounds (the
calls the model proposed and their spotlighted results) are sent: never an email, a name
or the user id.

Tools go out in each wire format (OpenAI `tools` / `tool_calls` + `tool` messages,
Anthropic `tools` / `tool_use` + `tool_result` blocks); proposed calls arrive as streamed
fragments and are assembled into `Completion.tool_calls`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
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
    ToolCall,
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


@dataclass(frozen=True, slots=True)
class _Piece:
    """One streamed event, provider-neutral: text, usage so far, or a fragment of a
    proposed tool call (`index` tells which call; id and name come with its first one)."""

    text: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    tool_index: int | None = None
    tool_id: str = ""
    tool_name: str = ""
    tool_arguments: str = ""


def _assemble_calls(fragments: dict[int, list[_Piece]]) -> tuple[ToolCall, ...]:
    calls = []
    for index in sorted(fragments):
        pieces = fragments[index]
        call_id = next((p.tool_id for p in pieces if p.tool_id), f"call_{index}")
        name = next((p.tool_name for p in pieces if p.tool_name), "")
        arguments = "".join(p.tool_arguments for p in pieces) or "{}"
        calls.append(ToolCall(call_id, name, arguments, wire_arguments=arguments))
    return tuple(calls)


def _json_object(text: str) -> dict[str, Any]:
    """A proposed call's arguments as an object for wire formats that need one (Anthropic
    `tool_use.input`); text that is not a JSON object becomes {} (it was refused anyway)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


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

    def _events(self, request: CompletionRequest) -> Iterator[_Piece]:
        raise NotImplementedError

    def stream(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        """Yield TokenDelta events, then one Completion; raise ProviderCallFailed."""
        parts: list[str] = []
        fragments: dict[int, list[_Piece]] = {}
        input_tokens = output_tokens = 0
        try:
            for piece in self._events(request):
                input_tokens = piece.input_tokens or input_tokens
                output_tokens = piece.output_tokens or output_tokens
                if piece.tool_index is not None:
                    fragments.setdefault(piece.tool_index, []).append(piece)
                if piece.text:
                    parts.append(piece.text)
                    yield TokenDelta(piece.text)
        except Exception as exc:
            raise map_sdk_error(exc) from exc
        text = "".join(parts)
        calls = _assemble_calls(fragments)
        if not text and not calls:
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
            tool_calls=calls,
        )


def _openai_messages(request: CompletionRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": request.system},
        {"role": "user", "content": request.user_message},
    ]
    for round_ in request.tool_rounds:
        messages.append(
            {
                "role": "assistant",
                "content": round_.text or None,
                "tool_calls": [
                    {
                        "id": call.call_id,
                        "type": "function",
                        "function": {
                            "name": call.name,
                            "arguments": call.wire_arguments or call.arguments,
                        },
                    }
                    for call in round_.calls
                ],
            }
        )
        messages.extend(
            {"role": "tool", "tool_call_id": outcome.call_id, "content": outcome.content}
            for outcome in round_.outcomes
        )
    return messages


def _openai_tools(request: CompletionRequest) -> dict[str, Any]:
    if not request.tools:
        return {}
    tools = [
        {
            "type": "function",
            "function": {"name": t.name, "description": t.description, "parameters": t.parameters},
        }
        for t in request.tools
    ]
    return {"tools": tools, "tool_choice": "auto" if request.allow_tool_calls else "none"}


def _anthropic_messages(request: CompletionRequest) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = [{"role": "user", "content": request.user_message}]
    for round_ in request.tool_rounds:
        content: list[dict[str, Any]] = []
        if round_.text:
            content.append({"type": "text", "text": round_.text})
        content.extend(
            {
                "type": "tool_use",
                "id": call.call_id,
                "name": call.name,
                "input": _json_object(call.wire_arguments or call.arguments),
            }
            for call in round_.calls
        )
        messages.append({"role": "assistant", "content": content})
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": outcome.call_id,
                        "content": outcome.content,
                        "is_error": outcome.is_error,
                    }
                    for outcome in round_.outcomes
                ],
            }
        )
    return messages


def _anthropic_tools(request: CompletionRequest) -> dict[str, Any]:
    if not request.tools:
        return {}
    tools = [
        {"name": t.name, "description": t.description, "input_schema": t.parameters}
        for t in request.tools
    ]
    choice = {"type": "auto"} if request.allow_tool_calls else {"type": "none"}
    return {"tools": tools, "tool_choice": choice}


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

    def _events(self, request: CompletionRequest) -> Iterator[_Piece]:
        # Built as plain dicts (the wire format), passed through untyped.
        extra: dict[str, Any] = {"messages": _openai_messages(request), **_openai_tools(request)}
        if self.kind == "openai":
            extra["stream_options"] = {"include_usage": True}
            extra["max_completion_tokens"] = request.max_tokens
        else:
            extra["max_tokens"] = request.max_tokens
        stream = self.client.chat.completions.create(
            model=self.model,
            stream=True,
            user=request.user_hash,
            extra_headers={REQUEST_ID_HEADER: request.request_id},
            **extra,
        )
        with stream:
            for chunk in stream:
                usage = chunk.usage
                delta = chunk.choices[0].delta if chunk.choices else None
                yield _Piece(
                    text=(delta.content or "") if delta else "",
                    input_tokens=usage.prompt_tokens if usage else 0,
                    output_tokens=usage.completion_tokens if usage else 0,
                )
                for call in (delta.tool_calls or []) if delta else []:
                    function = call.function
                    yield _Piece(
                        tool_index=call.index,
                        tool_id=call.id or "",
                        tool_name=(function.name or "") if function else "",
                        tool_arguments=(function.arguments or "") if function else "",
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

    def _events(self, request: CompletionRequest) -> Iterator[_Piece]:
        extra: dict[str, Any] = {
            "messages": _anthropic_messages(request),
            **_anthropic_tools(request),
        }
        stream = self.client.messages.create(
            model=self.model,
            max_tokens=request.max_tokens,
            system=request.system,
            metadata={"user_id": request.user_hash},
            extra_headers={REQUEST_ID_HEADER: request.request_id},
            stream=True,
            **extra,
        )
        input_tokens = 0
        with stream:
            for event in stream:
                if event.type == "message_start":
                    input_tokens = event.message.usage.input_tokens
                elif event.type == "content_block_start" and event.content_block.type == "tool_use":
                    block = event.content_block
                    yield _Piece(tool_index=event.index, tool_id=block.id, tool_name=block.name)
                elif event.type == "content_block_delta" and event.delta.type == "text_delta":
                    yield _Piece(text=event.delta.text, input_tokens=input_tokens)
                elif event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                    yield _Piece(tool_index=event.index, tool_arguments=event.delta.partial_json)
                elif event.type == "message_delta":
                    yield _Piece(input_tokens=input_tokens, output_tokens=event.usage.output_tokens)


def build_provider(config: ProviderConfig) -> Any:
    """The adapter for one config entry (`local` is built by the broker itself)."""
    factories: dict[str, Callable[[ProviderConfig], Any]] = {
        "openai": OpenAIProvider,
        "openai_compatible": OpenAIProvider,
        "anthropic": AnthropicProvider,
    }
    return factories[config.kind](config)
