"""`make run` and `make test`: start the embedded services, then the app or the tests.

    python -m infra.run serve   # migrate, seed, Celery worker, uvicorn; Ctrl-C stops all
    python -m infra.run test [pytest args]

Whatever this process started (servers, worker, web) it stops on exit, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from infra import services

ROOT = services.ROOT
BIN = Path(sys.executable).parent


def _say(message: str) -> None:
    print(f"==> {message}", flush=True)


@contextlib.contextmanager
def embedded_services() -> Iterator[services.ServiceState]:
    state, started = services.start()
    reused = {"postgres", "redis"} - started
    _say(
        "services: started "
        + (", ".join(sorted(started)) or "nothing")
        + (
            f"; reusing {', '.join(sorted(reused))}"
            if reused and not os.environ.get("DATABASE_URL")
            else ""
        )
    )
    try:
        yield state
    finally:
        if started:
            services.stop_started(started)
            _say(f"services: stopped {', '.join(sorted(started))}")


def _manage(*args: str, settings: str) -> str:
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings}
    result = subprocess.run(  # noqa: S603
        [str(BIN / "python"), "manage.py", *args],
        cwd=ROOT,
        env=env,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    )
    return result.stdout


def _wait_ready(url: str, procs: list[subprocess.Popen[bytes]], timeout: float = 120) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(p.poll() is not None for p in procs):
            return False
        with contextlib.suppress(OSError):
            with urllib.request.urlopen(url, timeout=2) as response:  # noqa: S310 - loopback
                if response.status == 200:
                    return True
        time.sleep(0.3)
    return False


def serve() -> int:
    settings = os.environ.get("DJANGO_SETTINGS_MODULE", "app.settings.dev")
    port = os.environ.get("PORT", "8000")
    started_at = time.monotonic()
    with embedded_services():
        print(_manage("migrate", "--noinput", settings=settings), end="")
        logins = _manage("seed_demo", settings=settings)
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings}
        worker = subprocess.Popen(  # noqa: S603
            [str(BIN / "celery"), "-A", "app", "worker", "--pool=solo", "--loglevel=INFO"],
            cwd=ROOT,
            env=env,
        )
        web = subprocess.Popen(  # noqa: S603
            [
                str(BIN / "uvicorn"),
                "app.asgi:application",
                "--host",
                "127.0.0.1",
                "--port",
                port,
                "--no-server-header",
            ],
            cwd=ROOT,
            env=env,
        )
        procs = [web, worker]
        stop = False

        def _stop(signum: int, frame: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGINT, _stop)
        signal.signal(signal.SIGTERM, _stop)
        try:
            if _wait_ready(f"http://127.0.0.1:{port}/readyz", procs):
                print(logins, end="", flush=True)
                _say(
                    f"ready in {time.monotonic() - started_at:.1f}s: http://127.0.0.1:{port}/ "
                    "(Ctrl-C stops everything)"
                )
            while not stop and all(p.poll() is None for p in procs):
                time.sleep(0.3)
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.terminate()
            for proc in procs:
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            _say("web server and worker stopped")
    return 0


def test(pytest_args: list[str]) -> int:
    with embedded_services():
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "app.settings.test"}
        result = subprocess.run(  # noqa: S603
            [str(BIN / "pytest"), *pytest_args], cwd=ROOT, env=env, check=False
        )
    return result.returncode


def script(path: str, args: list[str]) -> int:
    """Run a Python script (a benchmark, say) with the embedded services up."""
    with embedded_services():
        result = subprocess.run([str(BIN / "python"), path, *args], cwd=ROOT, check=False)  # noqa: S603
    return result.returncode


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else ""
    if command == "serve":
        return serve()
    if command == "test":
        return test(argv[2:])
    if command == "script" and len(argv) > 2:
        return script(argv[2], argv[3:])
    print("usage: python -m infra.run serve | test [pytest args] | script PATH", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
