"""Connections as the privileged database roles, for proving what they can and cannot do
to the audit trail. The code under test runs as the application role (tests/db_roles.py)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import NoReturn

import psycopg
import pytest
from django.conf import settings
from django.db import connection

from infra.services import load_state
from tests.db_roles import roles_are_split


def _skip_outside_ci(reason: str) -> NoReturn:
    """Skip where the deployment has no such role; under CI (`make test` always splits the
    roles) a missing role is a broken set-up, and the audit-trail proofs must not vanish."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


def _connect(url: str) -> psycopg.Connection:
    # Same server, the test database (the URL names the development one).
    dbname = str(connection.settings_dict["NAME"])
    return psycopg.connect(psycopg.conninfo.make_conninfo(url, dbname=dbname))


@pytest.fixture
def owner_db() -> Iterator[psycopg.Connection]:
    """A connection as the owner role (migrations' role); rolled back at the end."""
    if not roles_are_split():
        _skip_outside_ci("one database role for app and owner (no DATABASE_OWNER_URL)")
    with _connect(settings.DATABASE_OWNER_URL) as conn:
        yield conn
        conn.rollback()


@pytest.fixture
def superuser_db() -> Iterator[psycopg.Connection]:
    """A connection as the embedded server's superuser (or the owner when the database is
    external and no superuser is known): someone who can get past the triggers."""
    url = load_state().admin_database_url if settings.USING_EMBEDDED_DATABASE else None
    url = url or settings.DATABASE_OWNER_URL
    if not url:
        _skip_outside_ci("no privileged database role configured")
    with _connect(url) as conn:
        yield conn
        conn.rollback()
