"""The chat turn as Server-Sent Events, through the real ASGI app under uvicorn."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.conversation_crypto import data_key, message_content
from app.models import Conversation, Message
from broker.local import LocalProvider
from broker.types import CompletionRequest, StreamEvent, TokenDelta
from retrieval.models import Document

FORECAST_QUESTION = "What is the Q3 2026 revenue forecast?"
FORECAST_TITLE = "Q3 2026 Revenue Forecast"
FORECAST_FACTS = ("48.2", "Halvorsen")
DONE_KEYS = {
    "conversation",
    "message_id",
    "answer",
    "citations",
    "blocked",
    "reason",
    "provider",
    "request_id",
}
TIMEOUT = httpx.Timeout(15.0)


@dataclass(frozen=True)
class Event:
    name: str
    data: Any
    raw: str


def _events(lines: Iterator[str]) -> Iterator[Event]:
    """Parse SSE frames ("event: x", "data: ...", blank line) as they arrive."""
    name = "message"
    data: list[str] = []
    raw: list[str] = []
    for line in lines:
        if line == "":
            if data or raw:
                text = "\n".join(data)
                yield Event(name, json.loads(text) if text else None, "\n".join(raw))
            name, data, raw = "message", [], []
            continue
        raw.append(line)
        if line.startswith("event:"):
            name = line.removeprefix("event:").strip()
        elif line.startswith("data:"):
            data.append(line.removeprefix("data:").removeprefix(" "))


def _auth(bearer: Callable[..., dict[str, str]], username: str) -> dict[str, str]:
    return {"Authorization": bearer(username)["HTTP_AUTHORIZATION"]}


def _stream_request(client: httpx.Client, base: str, headers: dict[str, str], message: str) -> Any:
    return client.stream(
        "POST",
        f"{base}/api/v1/chat",
        json={"message": message, "conversation": None},
        headers={**headers, "Accept": "text/event-stream"},
    )


def _stream_chat(base: str, headers: dict[str, str], message: str) -> tuple[httpx.Response, list]:
    with (
        httpx.Client(timeout=TIMEOUT) as client,
        _stream_request(client, base, headers, message) as response,
    ):
        assert response.status_code == 200, response.read()
        return response, list(_events(response.iter_lines()))


def _names(events: list[Event]) -> list[str]:
    return [e.name for e in events]


@pytest.mark.usefixtures("demo")
def test_alice_gets_tokens_then_citations_then_the_contract_done(asgi_server, bearer):
    response, events = _stream_chat(asgi_server, _auth(bearer, "alice"), FORECAST_QUESTION)

    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    names = _names(events)
    assert names[-1] == "done", names
    assert names.count("done") == 1
    assert "blocked" not in names
    assert "error" not in names
    done_at = names.index("done")
    tokens = [e for e in events[:done_at] if e.name == "token"]
    assert len(tokens) >= 5, names
    assert names.index("citations") < done_at
    assert names.index("token") < names.index("citations")

    done = events[-1].data
    assert set(done) >= DONE_KEYS, sorted(done)
    assert isinstance(done["conversation"], int)
    assert isinstance(done["message_id"], int)
    assert done["blocked"] is False
    assert done["reason"] is None
    assert done["provider"] == "local"
    assert done["request_id"] == response.headers["x-request-id"]
    assert "".join(t.data["text"] for t in tokens) == done["answer"]
    assert "48.2" in done["answer"]

    forecast = Document.objects.get(title=FORECAST_TITLE)
    assert done["citations"], done
    for citation in done["citations"]:
        assert set(citation) >= {"document", "title", "chunk"}
        assert isinstance(citation["document"], int)
        assert isinstance(citation["chunk"], int)
    assert {"document": forecast.pk, "title": FORECAST_TITLE} in [
        {"document": c["document"], "title": c["title"]} for c in done["citations"]
    ]
    citations_event = next(e for e in events if e.name == "citations")
    assert citations_event.data == done["citations"]


@pytest.mark.usefixtures("demo")
def test_streamed_turn_is_persisted(asgi_server, bearer):
    _, events = _stream_chat(asgi_server, _auth(bearer, "alice"), FORECAST_QUESTION)
    done = events[-1].data
    assert events[-1].name == "done"

    conversation = Conversation.objects.get(pk=done["conversation"])
    assert conversation.owner.username == "alice"
    messages = list(conversation.messages.all())
    assert [m.role for m in messages] == [Message.Role.USER, Message.Role.ASSISTANT]
    key = data_key(conversation)
    assert message_content(messages[0], key) == FORECAST_QUESTION
    reply = messages[1]
    assert reply.pk == done["message_id"]
    assert message_content(reply, key) == done["answer"]
    assert reply.provider == "local"
    assert reply.request_id == done["request_id"]
    assert [(c.document_id, c.chunk_id, c.title) for c in reply.citations.all()] == [
        (c["document"], c["chunk"], c["title"]) for c in done["citations"]
    ]


@pytest.mark.usefixtures("demo")
def test_bob_streams_nothing_of_the_finance_forecast(asgi_server, bearer):
    _, events = _stream_chat(asgi_server, _auth(bearer, "bob"), FORECAST_QUESTION)

    assert events, "no events at all"
    assert events[-1].name in {"done", "blocked"}, _names(events)
    for event in events:
        for secret in (*FORECAST_FACTS, FORECAST_TITLE):
            assert secret not in event.raw, (event.name, event.raw)
    forecast = Document.objects.get(title=FORECAST_TITLE)
    cited = {c["document"] for e in events if e.name == "citations" for c in e.data}
    assert forecast.pk not in cited
    assert forecast.pk not in {c["document"] for c in events[-1].data["citations"]}


@pytest.mark.usefixtures("demo")
def test_tokens_reach_the_client_while_the_answer_is_still_being_generated(
    asgi_server, bearer, monkeypatch
):
    """The provider is held after its first token until the client has seen that token.

    A server (or middleware) that buffers the response cannot deliver the first token
    while generation is paused, so the provider's wait times out and the test fails."""
    gate = threading.Event()
    held: dict[str, bool] = {}
    real_stream = LocalProvider.stream

    def held_stream(self: LocalProvider, request: CompletionRequest) -> Iterator[StreamEvent]:
        events = real_stream(self, request)
        first = next(events)
        assert isinstance(first, TokenDelta)
        yield first
        held["released_by_client"] = gate.wait(timeout=8)
        yield from events

    monkeypatch.setattr(LocalProvider, "stream", held_stream)

    seen: list[str] = []
    with (
        httpx.Client(timeout=TIMEOUT) as client,
        _stream_request(client, asgi_server, _auth(bearer, "alice"), FORECAST_QUESTION) as resp,
    ):
        assert resp.status_code == 200
        for event in _events(resp.iter_lines()):
            seen.append(event.name)
            if event.name == "token" and not gate.is_set():
                # The server is parked inside generation: the response cannot be complete.
                assert "released_by_client" not in held
                assert seen == ["token"]
                gate.set()
    assert gate.is_set(), f"no token event arrived: {seen}"
    assert held == {"released_by_client": True}, "the first token was buffered server-side"
    assert seen[-1] == "done"
    assert seen.count("token") > 1


@pytest.mark.usefixtures("demo")
def test_a_tool_call_streams_as_a_tool_event_before_the_answer(asgi_server, bearer):
    """The offline provider proposes `convert_units` for a conversion question: the client
    sees which tool ran (a `tool` event), then the answer computed from its result."""
    _, events = _stream_chat(asgi_server, _auth(bearer, "bob"), "Please convert 5 km to mi.")
    names = _names(events)
    assert names[-1] == "done", names
    tool = next(e for e in events if e.name == "tool")
    assert tool.data == {"name": "convert_units", "ok": True, "reason": "allowed", "documents": []}
    assert names.index("tool") < names.index("token")
    assert "3.10685" in events[-1].data["answer"]
    assert events[-1].data["tools"] == [tool.data]
