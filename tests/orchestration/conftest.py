"""Fixtures for the guardrail tests: a loopback OpenAI-compatible guard-model server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from app.redis import redis_client

# The loopback provider server and providers-file fixtures, for the tool-call and output
# moderation tests that go through the real SDKs.
from tests.broker.conftest import (  # noqa: F401 - fixtures
    broker_redis,
    loopback,
    loopback_server,
    use_providers,
)


@pytest.fixture(autouse=True)
def _no_anomaly_signals_across_tests() -> Iterator[None]:
    """Rolling anomaly scores live in Redis, which tests do not roll back: start and end
    each test with none, so one test's blocked turns never throttle another's user."""

    def clear() -> None:
        client = redis_client()
        for key in client.scan_iter(match="anomaly:*"):
            client.delete(key)

    clear()
    yield
    clear()


@dataclass
class GuardServer:
    url: str
    reply: str = "safe"
    status: int = 200
    received: list[dict] = field(default_factory=list)


@pytest.fixture
def guard_server() -> Iterator[GuardServer]:
    """A real HTTP server speaking the OpenAI chat-completions wire format; the reply is
    whatever the test sets. The real `openai` SDK talks to it."""
    state = GuardServer(url="")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            state.received.append(body)
            payload = {
                "id": "chatcmpl-guard",
                "object": "chat.completion",
                "created": 0,
                "model": body.get("model", "guard"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": state.reply},
                        "finish_reason": "stop",
                    }
                ],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
            data = json.dumps(payload).encode()
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
