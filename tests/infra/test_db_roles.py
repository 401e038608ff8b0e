"""The embedded PostgreSQL's two roles: the owner migrates and owns everything, the app
role owns nothing and may not create databases; a database made before the split is
handed to the owner on the next start."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

ROOT = Path(__file__).resolve().parent.parent.parent


def _services(var: Path, command: str, **env: str) -> None:
    base = {k: v for k, v in os.environ.items() if k not in {"DATABASE_URL", "REDIS_URL"}}
    result = subprocess.run(  # noqa: S603
        [sys.executable, "-m", "infra.services", command],
        cwd=ROOT,
        env={**base, "APP_VAR_DIR": str(var), **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# Only PostgreSQL: a dummy REDIS_URL keeps Redis from starting (nothing connects to it).
NO_REDIS = {"REDIS_URL": "redis://redis.invalid:6379/0"}


@pytest.fixture
def scratch_postgres(tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    var = tmp_path / "var"
    _services(var, "start", **NO_REDIS)
    try:
        yield var, json.loads((var / "services.json").read_text())
    finally:
        _services(var, "stop", **NO_REDIS)


def _query(url: str, sql: str) -> tuple:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(sql).fetchone()
    assert row is not None
    return tuple(row)


def test_embedded_roles_split_owner_from_app(scratch_postgres):
    _, state = scratch_postgres
    assert _query(state["database_url"], "SELECT current_user")[0] == "app"
    assert _query(state["owner_database_url"], "SELECT current_user")[0] == "app_owner"
    app = _query(
        state["admin_database_url"],
        "SELECT rolsuper, rolbypassrls, rolcreatedb, rolcreaterole FROM pg_roles"
        " WHERE rolname = 'app'",
    )
    assert app == (False, False, False, False)
    owner = _query(
        state["admin_database_url"],
        "SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = 'app_owner'",
    )
    assert owner == (False, False)
    assert _query(
        state["admin_database_url"],
        "SELECT pg_get_userbyid(datdba), pg_get_userbyid(n.nspowner)"
        " FROM pg_database, pg_namespace n WHERE datname = 'app' AND n.nspname = 'public'",
    ) == ("app_owner", "app_owner")


def test_app_role_may_not_create_tables_in_the_embedded_database(scratch_postgres):
    _, state = scratch_postgres
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        _query(state["database_url"], "CREATE TABLE t (id int)")


def test_a_database_from_before_the_split_is_handed_to_the_owner(scratch_postgres):
    var, state = scratch_postgres
    admin = state["admin_database_url"]
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute("ALTER DATABASE app OWNER TO app")
        conn.execute("CREATE TABLE legacy (id int)")
        conn.execute("ALTER TABLE legacy OWNER TO app")
    _services(var, "start", **NO_REDIS)  # reuses the running server, re-applies ownership
    assert _query(
        admin,
        "SELECT pg_get_userbyid(d.datdba), t.tableowner FROM pg_database d, pg_tables t"
        " WHERE d.datname = 'app' AND t.tablename = 'legacy'",
    ) == ("app_owner", "app_owner")


def test_an_external_database_records_its_owner_url(tmp_path):
    var = tmp_path / "var"
    env = {
        **NO_REDIS,
        "DATABASE_URL": "postgres://app@db.invalid/app",
        "DATABASE_OWNER_URL": "postgres://owner@db.invalid/app",
    }
    _services(var, "start", **env)
    state = json.loads((var / "services.json").read_text())
    assert state["owner_database_url"] == env["DATABASE_OWNER_URL"]
    assert state["admin_database_url"] is None
    _services(var, "stop", **env)
