"""A real nginx + ModSecurity + OWASP CRS gateway, started per test module in front of the
real ASGI app (or a test upstream). Skipped, with the reason, only where nginx and its
modules are not installed and cannot be (`make test` runs infra/gateway/ensure-nginx.sh
first); under CI (CI set) a missing gateway is a failure, not a skip."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import pytest

from infra.gateway import nginx


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass(frozen=True)
class Gateway:
    config: nginx.GatewayConfig
    ca_cert: Path

    @property
    def url(self) -> str:
        return self.config.https_url

    def client(self, **kwargs: Any) -> httpx.Client:
        kwargs.setdefault("timeout", httpx.Timeout(30.0))
        kwargs.setdefault("headers", {"User-Agent": "gateway-tests/1.0"})
        verify = ssl.create_default_context(cafile=str(self.ca_cert))
        return httpx.Client(base_url=self.url, verify=verify, **kwargs)

    def log_tail(self) -> str:
        log = self.config.var_dir / "logs" / "error.log"
        return log.read_text()[-3000:] if log.exists() else ""


@pytest.fixture(scope="session")
def gateway_installed() -> None:
    missing = nginx.missing_parts()
    if not missing:
        return
    reason = (
        "the gateway needs " + ", ".join(missing) + " (install them as root with "
        "`bash infra/gateway/ensure-nginx.sh`, which `make test` runs)"
    )
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture
def start_gateway(
    gateway_installed: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[..., Gateway]]:
    started: list[Any] = []

    def start(upstream: str, **overrides: Any) -> Gateway:
        config = nginx.GatewayConfig(
            var_dir=tmp_path_factory.mktemp("gateway"),
            upstream=upstream,
            https_port=_free_port(),
            http_port=_free_port(),
        )
        config = replace(config, **overrides)
        proc, tls = nginx.start(config)
        started.append(proc)
        return Gateway(config=config, ca_cert=tls.ca_cert)

    yield start
    for proc in started:
        nginx.stop(proc)


@pytest.fixture
def app_gateway(start_gateway, asgi_server, settings, demo) -> Gateway:
    """The gateway in front of the real app; the app trusts it (and only it) as a proxy."""
    settings.TRUSTED_PROXIES = ["127.0.0.1"]
    return start_gateway(asgi_server.removeprefix("http://"))
