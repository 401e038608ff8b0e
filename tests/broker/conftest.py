"""The loopback provider server and a providers file pointing real SDK clients at it."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from broker import services as broker
from broker.loopback import LoopbackServer

LOOPBACK_KEY = "sk-loopback-test-key-not-secret"


@pytest.fixture(scope="session")
def loopback_server() -> Iterator[LoopbackServer]:
    with LoopbackServer() as server:
        yield server


@pytest.fixture
def loopback(loopback_server: LoopbackServer) -> Iterator[LoopbackServer]:
    loopback_server.reset()
    yield loopback_server
    loopback_server.reset()


@pytest.fixture
def broker_redis(settings: Any) -> str:
    """Breakers and budgets of this test live under their own Redis prefix."""
    settings.BROKER_REDIS_PREFIX = f"test-broker-{uuid.uuid4().hex}"
    return str(settings.BROKER_REDIS_PREFIX)


def provider_entry(loopback: LoopbackServer, name: str, kind: str, **fields: Any) -> dict:
    """One providers-file entry aimed at the loopback server (model = name, for attribution)."""
    entry: dict[str, Any] = {
        "name": name,
        "kind": kind,
        "model": f"model-{name}",
        "api_key_ref": "env:LOOPBACK_PROVIDER_KEY",
        "max_tier": "internal",
        "zero_retention": False,
        "priority": 10,
        "timeout_s": 5,
        "connect_timeout_s": 1,
        "redact_pii": False,
    }
    if kind == "anthropic":
        entry["base_url"] = loopback.url
    elif kind != "local":
        entry["base_url"] = loopback.openai_base_url
    else:
        entry.pop("api_key_ref")
    entry.update(fields)
    return entry


@pytest.fixture
def use_providers(
    settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, broker_redis: str
) -> Iterator[Callable[[list[dict]], Path]]:
    """Write a providers file and point LLM_PROVIDERS_FILE at it."""
    monkeypatch.setenv("LOOPBACK_PROVIDER_KEY", LOOPBACK_KEY)

    def use(entries: list[dict]) -> Path:
        path = tmp_path / f"providers-{uuid.uuid4().hex[:8]}.yaml"
        path.write_text(yaml.safe_dump({"providers": entries}))
        settings.LLM_PROVIDERS_FILE = str(path)
        broker.configured_providers.cache_clear()
        return path

    yield use
    broker.configured_providers.cache_clear()
