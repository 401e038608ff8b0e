"""`make run` and `make test`: start the embedded services, then the app or the tests.

    python -m infra.run serve   # migrate, seed, Celery worker + beat, uvicorn; Ctrl-C stops all
    python -m infra.run test [pytest args]

Whatever this process started (servers, worker, web) it stops on exit, and nothing else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
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


def _manage(*args: str, settings: str, role: str = "app") -> str:
    """Run a management command; migrations run as the database owner role."""
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": settings, "DATABASE_ROLE": role}
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


def _fresh_metrics_dir() -> Path:
    """Web server, worker and beat share their Prometheus metrics through files here;
    counters start from zero on each run, as they would in a restarted process."""
    path = services.VAR / "prometheus"
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def serve() -> int:
    settings = os.environ.get("DJANGO_SETTINGS_MODULE", "app.settings.dev")
    port = os.environ.get("PORT", "8000")
    started_at = time.monotonic()
    with embedded_services():
        print(_manage("migrate", "--noinput", settings=settings, role="owner"), end="")
        logins = _manage("seed_demo", settings=settings)
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": settings,
            "PROMETHEUS_MULTIPROC_DIR": str(_fresh_metrics_dir()),
        }
        worker = subprocess.Popen(  # noqa: S603
            [str(BIN / "celery"), "-A", "app", "worker", "--pool=solo", "--loglevel=INFO"],
            cwd=ROOT,
            env=env,
        )
        # Celery beat: the periodic tasks (retention) of CELERY_BEAT_SCHEDULE.
        beat = subprocess.Popen(  # noqa: S603
            [
                str(BIN / "celery"), "-A", "app", "beat", "--loglevel=INFO",
                "--schedule", str(services.VAR / "celerybeat-schedule"),
            ],
            cwd=ROOT,
            env=env,
        )  # fmt: skip
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
        procs = [web, worker, beat]
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
            _say("web server, worker and beat stopped")
    return 0


def test(pytest_args: list[str]) -> int:
    with embedded_services():
        env = {**os.environ, "DJANGO_SETTINGS_MODULE": "app.settings.test"}
        result = subprocess.run(  # noqa: S603
            [str(BIN / "pytest"), *pytest_args], cwd=ROOT, env=env, check=False
        )
    return result.returncode


def script(path: str, args: list[str]) -> int:
    """Run a Python script (a benchmark, say) with the embedded services up. Scripts are
    maintenance tools that build their own databases: they run as the owner role."""
    with embedded_services():
        env = {**os.environ, "DATABASE_ROLE": os.environ.get("DATABASE_ROLE", "owner")}
        result = subprocess.run(  # noqa: S603
            [str(BIN / "python"), path, *args], cwd=ROOT, env=env, check=False
        )
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
