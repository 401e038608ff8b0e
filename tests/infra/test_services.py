"""`python -m infra.services start|stop|status` in a scratch APP_VAR_DIR.

DATABASE_URL is set to a dummy value so only Redis is started: each test owns a real
redis-server of its own and a finalizer stops it, whatever the test did.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _pid_running(pid: int) -> bool:
    """Alive and not a zombie (a daemonised redis may be reparented to a non-reaping init)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError):
        if "\nState:\tZ" in Path(f"/proc/{pid}/status").read_text():
            return False
    return True


def _wait_dead(pid: int, timeout: float = 10) -> bool:
    deadline = time.monotonic() + timeout
    while _pid_running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def _ping(sock: Path) -> bool:
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(1)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Services:
    var: Path
    env: dict[str, str]

    @property
    def state_file(self) -> Path:
        return self.var / "services.json"

    @property
    def pidfile(self) -> Path:
        return self.var / "redis" / "redis.pid"

    @property
    def socket(self) -> Path:
        return self.var / "redis" / "redis.sock"

    def run(self, command: str, **env: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "infra.services", command],
            cwd=ROOT,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stderr
        return result

    def state(self) -> dict:
        return json.loads(self.state_file.read_text())

    def redis_pid(self) -> int:
        pid = self.state()["redis_pid"]
        assert isinstance(pid, int)
        return pid


def _make_services(var: Path) -> Services:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env["APP_VAR_DIR"] = str(var)
    # A dummy URL: nothing connects to it, it only stops the embedded PostgreSQL starting.
    env["DATABASE_URL"] = "postgres://nobody@db.invalid/none"
    return Services(var=var, env=env)


def _kill_leftovers(services: Services, pids: set[int]) -> None:
    with contextlib.suppress(FileNotFoundError, ValueError):
        pids.add(int(services.pidfile.read_text().strip()))
    with contextlib.suppress(FileNotFoundError, ValueError, KeyError):
        pids.add(int(services.state()["redis_pid"]))
    for pid in pids:
        with contextlib.suppress(OSError):
            if _pid_running(pid) and "redis" in Path(f"/proc/{pid}/cmdline").read_text():
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    svc = _make_services(tmp_path / "var")
    assert len(str(svc.socket)) < 100, "the test socket path must not take the short-dir path"
    seen: set[int] = set()
    try:
        yield svc
    finally:
        with contextlib.suppress(Exception):
            seen.add(svc.redis_pid())
        subprocess.run(  # noqa: S603
            [sys.executable, "-m", "infra.services", "stop"],
            cwd=ROOT,
            env=svc.env,
            capture_output=True,
            timeout=60,
            check=False,
        )
        _kill_leftovers(svc, seen)


def test_start_starts_only_redis_when_database_url_is_set(services):
    out = services.run("start").stdout
    state = services.state()
    assert state["database_url"] == services.env["DATABASE_URL"]
    assert state["started_postgres"] is False
    assert state["started_redis"] is True
    assert state["redis_url"] == f"redis+socket://{services.socket}"
    assert f"redis+socket://{services.socket}" in out
    assert _pid_running(services.redis_pid())
    assert _ping(services.socket)
    assert not (services.var / "pgdata").exists()


def test_start_is_idempotent_and_reuses_the_running_redis(services):
    services.run("start")
    first = services.redis_pid()
    assert int(services.pidfile.read_text()) == first

    services.run("start")
    second = services.state()
    assert second["redis_pid"] == first
    assert second["started_redis"] is True  # still ours: stop must still stop it
    assert _pid_running(first)
    assert _ping(services.socket)
    status = services.run("status").stdout
    assert "redis running:    True" in status


def test_killed_redis_leaving_stale_pidfile_and_socket_does_not_block_start(services):
    services.run("start")
    old = services.redis_pid()
    os.kill(old, signal.SIGKILL)
    assert _wait_dead(old)
    # What a killed run leaves behind: the pid file and a socket nobody answers on.
    assert services.pidfile.exists()
    assert services.socket.exists()
    assert not _ping(services.socket)
    assert "redis running:    False" in services.run("status").stdout

    services.run("start")
    new = services.redis_pid()
    assert new != old
    assert _pid_running(new)
    assert int(services.pidfile.read_text()) == new
    assert _ping(services.socket)


def test_pidfile_naming_a_live_unrelated_process_does_not_block_start(services):
    """A recycled pid (alive, but not our redis) with a dead socket is treated as stale."""
    services.socket.parent.mkdir(parents=True)
    services.pidfile.write_text(str(os.getpid()))
    services.socket.write_text("not a socket")

    services.run("start")
    pid = services.redis_pid()
    assert pid != os.getpid()
    assert _pid_running(pid)
    assert _ping(services.socket)


def test_stop_stops_what_start_started(services):
    services.run("start")
    pid = services.redis_pid()
    assert _pid_running(pid)

    out = services.run("stop").stdout
    assert "stopped" in out
    assert _wait_dead(pid)
    assert not _ping(services.socket)
    assert not services.state_file.exists()
    assert "redis running:    False" in services.run("status").stdout


def test_stop_leaves_alone_a_redis_it_did_not_start(services, tmp_path):
    services.run("start")
    ours = services.redis_pid()

    other = _make_services(tmp_path / "other-var")
    url = f"redis+socket://{services.socket}"
    other.run("start", REDIS_URL=url)
    state = other.state()
    assert state["redis_url"] == url
    assert state["started_redis"] is False
    assert state["redis_pid"] is None

    other.run("stop", REDIS_URL=url)
    assert _pid_running(ours)
    assert _ping(services.socket)


def test_stop_never_signals_a_recycled_pid_that_is_not_our_redis(services):
    """After a crash the recorded pid may belong to an unrelated process: stop spares it."""
    bystander = subprocess.Popen(["sleep", "30"])  # noqa: S607 - coreutils sleep
    ours = None
    try:
        services.run("start")
        ours = services.redis_pid()
        state = services.state()
        state["redis_pid"] = bystander.pid
        services.state_file.write_text(json.dumps(state))
        services.run("stop")
        assert bystander.poll() is None, "stop killed a process that was not our redis"
    finally:
        bystander.kill()
        bystander.wait()
        if ours is not None and _pid_running(ours):
            os.kill(ours, signal.SIGTERM)
            _wait_dead(ours)


def test_memory_settings_take_a_quarter_and_a_half_of_memory_with_a_floor():
    from infra.services import memory_settings

    assert memory_settings(24 * 2**30) == {"shared_buffers": 6144, "effective_cache_size": 12288}
    assert memory_settings(256 * 2**20) == {"shared_buffers": 128, "effective_cache_size": 128}


def test_a_fresh_embedded_postgres_runs_with_the_memory_settings(tmp_path):
    import psycopg

    from infra.services import _memory_bytes, memory_settings

    var = tmp_path / "var"
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "DATABASE_URL"}}
    env["APP_VAR_DIR"] = str(var)
    # A dummy URL: nothing connects to it, it only stops a Redis starting.
    env["REDIS_URL"] = "redis://nobody@redis.invalid/0"
    svc = Services(var=var, env=env)
    try:
        svc.run("start")
        state = svc.state()
        assert state["started_postgres"] is True
        running = {}
        with psycopg.connect(state["admin_database_url"]) as conn:
            for name in ("shared_buffers", "effective_cache_size"):
                row = conn.execute(
                    "SELECT pg_size_bytes(current_setting(%s)) / 1048576", (name,)
                ).fetchone()
                assert row is not None
                running[name] = row[0]
        assert running == memory_settings(_memory_bytes())
        assert running["shared_buffers"] > 128  # the restart took the new size, not the default
    finally:
        svc.run("stop")
