"""A loopback model provider: a small ASGI server speaking the OpenAI chat-completions,
embeddings and moderations and the Anthropic messages wire protocols (streaming included),
recording every request it receives, with fault injection per request or per scenario.
It can be told to propose a tool call instead of answering (`propose`), and which
moderation categories to flag (`flag_moderation`).

Tests, benchmarks and the demo point real SDK clients at it. It refuses to start under
production settings (`ENVIRONMENT == "prod"` or `LOOPBACK_PROVIDER_ENABLED` off), so no
production deployment can route a model call to it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings

Scope = dict[str, Any]
Receive = Any
Send = Any

FAULT_KINDS = frozenset(
    {"latency", "status", "read_timeout", "disconnect", "malformed", "malformed_stream"}
)


class LoopbackDisabled(RuntimeError):
    """The loopback provider may not run under these settings."""


def ensure_loopback_allowed() -> None:
    if getattr(settings, "ENVIRONMENT", "") == "prod" or not getattr(
        settings, "LOOPBACK_PROVIDER_ENABLED", False
    ):
        raise LoopbackDisabled(
            "the loopback provider is for tests, benchmarks and the demo; it is disabled "
            "under production settings"
        )


@dataclass(frozen=True, slots=True)
class Fault:
    """What to do to one request. `kind`: latency (then answer normally), status (reply
    `status` with `retry_after`), read_timeout (stall `seconds` before answering),
    disconnect (stream `after_tokens` tokens then drop the connection), malformed (a 200
    whose body is not JSON), malformed_stream (a stream whose first event is not JSON)."""

    kind: str
    seconds: float = 0.0
    status: int = 500
    retry_after: float | None = None
    after_tokens: int = 2

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault kind {self.kind!r}")


@dataclass(frozen=True, slots=True)
class Recorded:
    """One request as the server received it."""

    path: str
    headers: dict[str, str]
    body: dict[str, Any]
    at: float

    @property
    def text(self) -> str:
        """Everything a model would read (for 'did X reach this provider?' assertions)."""
        return json.dumps(self.body, ensure_ascii=False)


@dataclass(frozen=True, slots=True)
class Proposal:
    """A tool call the next chat request answers with instead of text. `arguments` is
    sent as given: a dict becomes JSON, a string goes verbatim (to send malformed JSON)."""

    name: str
    arguments: dict[str, Any] | str
    call_id: str = "call_loopback_1"

    @property
    def arguments_json(self) -> str:
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments)


MODERATION_CATEGORIES = (
    "harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
    "illicit/violent", "self-harm", "self-harm/instructions", "self-harm/intent", "sexual",
    "sexual/minors", "violence", "violence/graphic",
)  # fmt: skip


DEFAULT_REPLY = "Per the documents, the answer is 42 [1]."


@dataclass
class LoopbackState:
    reply: str = DEFAULT_REPLY
    faults: deque[Fault] = field(default_factory=deque)
    scenario: Fault | None = None
    recorded: list[Recorded] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    proposals: deque[Proposal] = field(default_factory=deque)
    # Moderation: these categories are flagged for inputs containing `moderation_trigger`
    # (every input when it is empty).
    moderation_flags: frozenset[str] = frozenset()
    moderation_trigger: str = ""

    def next_proposal(self) -> Proposal | None:
        with self.lock:
            return self.proposals.popleft() if self.proposals else None

    def next_fault(self) -> Fault | None:
        with self.lock:
            if self.faults:
                return self.faults.popleft()
            return self.scenario


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def _words(text: str) -> list[str]:
    out, current = [], ""
    for ch in text:
        current += ch
        if ch == " ":
            out.append(current)
            current = ""
    if current:
        out.append(current)
    return out


def _fake_embedding(text: str, dim: int = 384) -> list[float]:
    """A deterministic vector of `dim` numbers (the `dimensions` the request asked for, or
    the size of the application's index), derived from the text."""
    digest = hashlib.sha256(text.encode()).digest()
    return [digest[i % len(digest)] / 255 for i in range(dim)]


def _openai_chunk(base: dict[str, Any], delta: dict[str, Any], finish: str | None = None) -> str:
    """One `chat.completion.chunk` event of an OpenAI stream."""
    return json.dumps(
        {
            **base,
            "object": "chat.completion.chunk",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
    )


class _Dropped(Exception):
    """Raised inside the app to make uvicorn drop the connection mid-response."""


class LoopbackApp:
    """The ASGI application."""

    def __init__(self, state: LoopbackState) -> None:
        self.state = state

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        raw = await _read_body(receive)
        try:
            body = json.loads(raw or b"{}")
        except json.JSONDecodeError:
            body = {"_raw": raw.decode(errors="replace")}
        headers = {k.decode().lower(): v.decode() for k, v in scope["headers"]}
        path = scope["path"]
        with self.state.lock:
            self.state.recorded.append(Recorded(path, headers, body, time.time()))
        fault = self.state.next_fault()
        if fault is not None:
            if fault.kind in {"latency", "read_timeout"}:
                await asyncio.sleep(fault.seconds)
            elif fault.kind == "status":
                extra = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after else {}
                await self._json(send, fault.status, {"error": {"message": "injected"}}, extra)
                return
            elif fault.kind == "malformed":
                await self._raw(send, 200, b'{"id": "broken", "choices": [', "application/json")
                return
        if path.endswith("/chat/completions"):
            proposal = self.state.next_proposal()
            if proposal is not None:
                await self._openai_tool_call(send, body, proposal)
            else:
                await self._openai_chat(send, body, fault)
        elif path.endswith("/moderations"):
            await self._moderation(send, body)
        elif path.endswith("/embeddings"):
            inputs = body.get("input", [])
            inputs = [inputs] if isinstance(inputs, str) else inputs
            data = [
                {
                    "object": "embedding",
                    "index": i,
                    "embedding": _fake_embedding(str(t), int(body.get("dimensions") or 384)),
                }
                for i, t in enumerate(inputs)
            ]
            usage = {"prompt_tokens": len(inputs), "total_tokens": len(inputs)}
            await self._json(
                send,
                200,
                {"object": "list", "data": data, "model": body.get("model"), "usage": usage},
            )
        elif path.endswith("/messages"):
            proposal = self.state.next_proposal()
            if proposal is not None:
                await self._anthropic_tool_use(send, body, proposal)
            else:
                await self._anthropic(send, body, fault)
        else:
            await self._json(send, 404, {"error": {"message": "not found"}})

    async def _raw(
        self, send: Send, status: int, data: bytes, content_type: str, extra: dict | None = None
    ) -> None:
        headers = [(b"content-type", content_type.encode())]
        headers += [(k.encode(), v.encode()) for k, v in (extra or {}).items()]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def _json(self, send: Send, status: int, data: Any, extra: dict | None = None) -> None:
        await self._raw(send, status, json.dumps(data).encode(), "application/json", extra)

    async def _sse_start(self, send: Send) -> None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/event-stream")],
            }
        )

    async def _sse(self, send: Send, data: str, event: str | None = None) -> None:
        prefix = f"event: {event}\n" if event else ""
        await send(
            {
                "type": "http.response.body",
                "body": f"{prefix}data: {data}\n\n".encode(),
                "more_body": True,
            }
        )

    def _usage(self, body: dict[str, Any]) -> tuple[int, int]:
        prompt = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        prompt += len(str(body.get("system", "")).split())
        return prompt, len(self.state.reply.split())

    async def _openai_chat(self, send: Send, body: dict[str, Any], fault: Fault | None) -> None:
        words = _words(self.state.reply)
        prompt_tokens, completion_tokens = self._usage(body)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        base = {"id": "chatcmpl-loopback", "created": int(time.time()), "model": body.get("model")}
        if not body.get("stream"):
            message = {"role": "assistant", "content": self.state.reply}
            choice = {"index": 0, "message": message, "finish_reason": "stop"}
            await self._json(
                send,
                200,
                {**base, "object": "chat.completion", "choices": [choice], "usage": usage},
            )
            return
        await self._sse_start(send)
        if fault is not None and fault.kind == "malformed_stream":
            await self._sse(send, "{not json")
            await send({"type": "http.response.body", "body": b""})
            return
        for i, word in enumerate(words):
            if fault is not None and fault.kind == "disconnect" and i == fault.after_tokens:
                raise _Dropped
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": word}
            await self._sse(send, _openai_chunk(base, delta))
        await self._sse(send, _openai_chunk(base, {}, "stop"))
        if (body.get("stream_options") or {}).get("include_usage"):
            await self._sse(
                send,
                json.dumps(
                    {**base, "object": "chat.completion.chunk", "choices": [], "usage": usage}
                ),
            )
        await self._sse(send, "[DONE]")
        await send({"type": "http.response.body", "body": b""})

    async def _moderation(self, send: Send, body: dict[str, Any]) -> None:
        inputs = body.get("input", "")
        inputs = [inputs] if isinstance(inputs, str) else inputs
        results = []
        for text in inputs:
            hit = not self.state.moderation_trigger or self.state.moderation_trigger in str(text)
            flagged = self.state.moderation_flags if hit else frozenset()
            results.append(
                {
                    "flagged": bool(flagged),
                    "categories": {c: c in flagged for c in MODERATION_CATEGORIES},
                    "category_scores": {
                        c: 0.97 if c in flagged else 0.001 for c in MODERATION_CATEGORIES
                    },
                    "category_applied_input_types": {c: ["text"] for c in MODERATION_CATEGORIES},
                }
            )
        await self._json(
            send,
            200,
            {"id": "modr-loopback", "model": body.get("model"), "results": results},
        )

    async def _openai_tool_call(self, send: Send, body: dict[str, Any], proposal: Proposal) -> None:
        """Answer with a proposed tool call: its arguments streamed in pieces, as real
        servers do, and finish_reason "tool_calls"."""
        base = {"id": "chatcmpl-loopback", "created": int(time.time()), "model": body.get("model")}
        arguments = proposal.arguments_json
        if not body.get("stream"):
            call = {
                "id": proposal.call_id,
                "type": "function",
                "function": {"name": proposal.name, "arguments": arguments},
            }
            message = {"role": "assistant", "content": None, "tool_calls": [call]}
            choice = {"index": 0, "message": message, "finish_reason": "tool_calls"}
            await self._json(send, 200, {**base, "object": "chat.completion", "choices": [choice]})
            return
        await self._sse_start(send)
        first = {
            "index": 0,
            "id": proposal.call_id,
            "type": "function",
            "function": {"name": proposal.name, "arguments": ""},
        }
        deltas: list[dict[str, Any]] = [
            {"role": "assistant", "content": None, "tool_calls": [first]}
        ]
        step = max(1, len(arguments) // 3)
        for start in range(0, len(arguments), step):
            piece = arguments[start : start + step]
            deltas.append({"tool_calls": [{"index": 0, "function": {"arguments": piece}}]})
        for delta in deltas:
            await self._sse(send, _openai_chunk(base, delta))
        await self._sse(send, _openai_chunk(base, {}, "tool_calls"))
        await self._sse(send, "[DONE]")
        await send({"type": "http.response.body", "body": b""})

    async def _anthropic_tool_use(
        self, send: Send, body: dict[str, Any], proposal: Proposal
    ) -> None:
        """Answer with a `tool_use` block: input streamed as `input_json_delta` pieces,
        stop_reason "tool_use"."""
        prompt_tokens, _ = self._usage(body)
        arguments = proposal.arguments_json
        message: dict[str, Any] = {
            "id": "msg_loopback",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 0},
        }
        block = {"type": "tool_use", "id": proposal.call_id, "name": proposal.name, "input": {}}
        if not body.get("stream"):
            block["input"] = (
                json.loads(arguments) if not isinstance(proposal.arguments, str) else {}
            )
            message |= {"content": [block], "stop_reason": "tool_use"}
            await self._json(send, 200, message)
            return
        await self._sse_start(send)
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": message}),
            (
                "content_block_start",
                {"type": "content_block_start", "index": 0, "content_block": block},
            ),
        ]
        step = max(1, len(arguments) // 3)
        for start in range(0, len(arguments), step):
            delta = {"type": "input_json_delta", "partial_json": arguments[start : start + step]}
            events.append(
                (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": 0, "delta": delta},
                )
            )
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                    "usage": {"output_tokens": 5},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        for name, event in events:
            await self._sse(send, json.dumps(event), event=name)
        await send({"type": "http.response.body", "body": b""})

    async def _anthropic(self, send: Send, body: dict[str, Any], fault: Fault | None) -> None:
        words = _words(self.state.reply)
        prompt_tokens, completion_tokens = self._usage(body)
        message: dict[str, Any] = {
            "id": "msg_loopback",
            "type": "message",
            "role": "assistant",
            "model": body.get("model"),
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": prompt_tokens, "output_tokens": 0},
        }
        if not body.get("stream"):
            message["content"] = [{"type": "text", "text": self.state.reply}]
            message["stop_reason"] = "end_turn"
            message["usage"] = {"input_tokens": prompt_tokens, "output_tokens": completion_tokens}
            await self._json(send, 200, message)
            return
        await self._sse_start(send)
        if fault is not None and fault.kind == "malformed_stream":
            await self._sse(send, "{not json", event="message_start")
            await send({"type": "http.response.body", "body": b""})
            return
        events: list[tuple[str, dict[str, Any]]] = [
            ("message_start", {"type": "message_start", "message": message}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
        ]
        for name, event in events:
            await self._sse(send, json.dumps(event), event=name)
        for i, word in enumerate(words):
            if fault is not None and fault.kind == "disconnect" and i == fault.after_tokens:
                raise _Dropped
            delta = {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": word},
            }
            await self._sse(send, json.dumps(delta), event="content_block_delta")
        tail: list[tuple[str, dict[str, Any]]] = [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": completion_tokens},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        for name, event in tail:
            await self._sse(send, json.dumps(event), event=name)
        await send({"type": "http.response.body", "body": b""})


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def refused_url() -> str:
    """A loopback URL where nothing listens: connecting to it is refused."""
    return f"http://127.0.0.1:{free_port()}"


class LoopbackServer:
    """The app under uvicorn in a daemon thread on 127.0.0.1. Use as a context manager."""

    def __init__(self, *, port: int = 0) -> None:
        ensure_loopback_allowed()
        self.state = LoopbackState()
        self.port = port or free_port()
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def openai_base_url(self) -> str:
        return f"{self.url}/v1"

    @property
    def recorded(self) -> list[Recorded]:
        with self.state.lock:
            return list(self.state.recorded)

    def inject(self, *faults: Fault) -> None:
        """Apply these faults to the next requests, one each, in order."""
        with self.state.lock:
            self.state.faults.extend(faults)

    def set_scenario(self, fault: Fault | None) -> None:
        """Apply this fault to every request (after any queued one-shot faults)."""
        with self.state.lock:
            self.state.scenario = fault

    def propose(self, *proposals: Proposal) -> None:
        """Answer the next chat requests, one each, with these tool calls."""
        with self.state.lock:
            self.state.proposals.extend(proposals)

    def flag_moderation(self, categories: frozenset[str], *, when_contains: str = "") -> None:
        """Flag these moderation categories (for inputs containing `when_contains`)."""
        unknown = set(categories) - set(MODERATION_CATEGORIES)
        if unknown:
            raise ValueError(f"unknown moderation categories {sorted(unknown)}")
        with self.state.lock:
            self.state.moderation_flags = frozenset(categories)
            self.state.moderation_trigger = when_contains

    def reset(self) -> None:
        with self.state.lock:
            self.state.faults.clear()
            self.state.scenario = None
            self.state.recorded.clear()
            self.state.proposals.clear()
            self.state.reply = DEFAULT_REPLY
            self.state.moderation_flags = frozenset()
            self.state.moderation_trigger = ""

    def start(self) -> LoopbackServer:
        import uvicorn

        config = uvicorn.Config(
            LoopbackApp(self.state),
            host="127.0.0.1",
            port=self.port,
            log_level="critical",
            lifespan="off",
            access_log=False,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="loopback")
        self._thread.start()
        deadline = time.monotonic() + 15
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the loopback provider did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
