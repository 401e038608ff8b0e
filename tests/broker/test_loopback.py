"""The loopback provider server: both wire protocols through the real SDKs, recording, and
its refusal to run under production settings."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import anthropic
import openai
import pytest

from broker.loopback import Fault, LoopbackDisabled, LoopbackServer, ensure_loopback_allowed

ROOT = Path(__file__).resolve().parents[2]


def test_loopback_refuses_to_start_under_prod_environment(settings):
    settings.ENVIRONMENT = "prod"
    with pytest.raises(LoopbackDisabled):
        LoopbackServer()


def test_loopback_refuses_to_start_when_not_enabled(settings):
    settings.LOOPBACK_PROVIDER_ENABLED = False
    with pytest.raises(LoopbackDisabled):
        ensure_loopback_allowed()


def test_prod_settings_force_the_loopback_off_whatever_the_environment_says():
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "ALLOW_", "LOCAL_PROVIDER_", "DATABASE_URL"))
    }
    env.update(
        DJANGO_SETTINGS_MODULE="app.settings.prod",
        DJANGO_SECRET_KEY="k" + "".join(chr(65 + i % 26) + str(i) for i in range(40)),
        DJANGO_ALLOWED_HOSTS="chat.example.com",
        DATABASE_URL="postgres://u:p@db.example.com/app",
        LOCAL_PROVIDER_MAX_TIER="internal",
        CONVERSATION_KEK_LOCAL_REF="file:/run/secrets/conversation-keks",
        LOOPBACK_PROVIDER_ENABLED="1",
    )
    code = (
        "import django; django.setup()\n"
        "from broker.loopback import LoopbackServer, LoopbackDisabled\n"
        "try:\n    LoopbackServer()\nexcept LoopbackDisabled:\n    print('refused')\n"
    )
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-c", code],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.stdout.strip() == "refused", result.stderr


def test_openai_sdk_streams_from_loopback_and_the_request_is_recorded(loopback):
    client = openai.OpenAI(api_key="k", base_url=loopback.openai_base_url, max_retries=0)
    stream = client.chat.completions.create(
        model="m", messages=[{"role": "user", "content": "ping"}], stream=True, user="u1"
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text == loopback.state.reply
    (seen,) = loopback.recorded
    assert seen.path == "/v1/chat/completions"
    assert seen.body["user"] == "u1"
    assert seen.body["messages"][0]["content"] == "ping"
    vectors = client.embeddings.create(model="e", input=["a", "b"])
    assert [len(d.embedding) for d in vectors.data] == [384, 384]  # the index's size
    vectors = client.embeddings.create(model="e", input=["a"], dimensions=8)
    assert [len(d.embedding) for d in vectors.data] == [8]


def test_anthropic_sdk_streams_from_loopback(loopback):
    client = anthropic.Anthropic(api_key="k", base_url=loopback.url, max_retries=0)
    with client.messages.stream(
        model="m", max_tokens=10, messages=[{"role": "user", "content": "ping"}]
    ) as stream:
        text = "".join(stream.text_stream)
    assert text == loopback.state.reply
    assert loopback.recorded[0].path == "/v1/messages"


def test_faults_apply_in_order_then_the_scenario(loopback):
    client = openai.OpenAI(api_key="k", base_url=loopback.openai_base_url, max_retries=0)

    def call() -> object:
        return client.chat.completions.create(
            model="m", messages=[{"role": "user", "content": "x"}]
        )

    loopback.inject(Fault("status", status=429, retry_after=7))
    loopback.set_scenario(Fault("status", status=503))
    with pytest.raises(openai.RateLimitError) as limited:
        call()
    assert limited.value.response.headers["retry-after"] == "7"
    with pytest.raises(openai.InternalServerError):
        call()
    loopback.set_scenario(None)
    assert call().choices[0].message.content == loopback.state.reply  # type: ignore[attr-defined]
