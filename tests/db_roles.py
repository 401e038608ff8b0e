"""Which database role the test process uses, mirroring production: the owner creates and
migrates the test database (and resets it between transactional tests), the code under
test runs as the application role."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import dj_database_url
from django.conf import settings
from django.db import connections

Role = Literal["app", "owner"]


def roles_are_split() -> bool:
    return bool(settings.DATABASE_OWNER_URL) and (
        dj_database_url.parse(settings.DATABASE_OWNER_URL).get("USER") != settings.DATABASE_APP_USER
    )


def _credentials(role: Role) -> dict[str, object]:
    url = settings.DATABASE_OWNER_URL if role == "owner" else settings.DATABASE_URL
    parsed = dj_database_url.parse(url)
    return {key: parsed.get(key, "") for key in ("USER", "PASSWORD")}


def use_role(role: Role) -> None:
    """Point the default connection (this thread's and every new one) at `role`. The test
    database name set by the runner is kept."""
    if not roles_are_split():
        return
    connection = connections["default"]
    connection.close()
    connection.settings_dict.update(_credentials(role))


@contextmanager
def owner_role(*, allow_audit_truncate: bool = False) -> Iterator[None]:
    use_role("owner")
    try:
        if allow_audit_truncate and roles_are_split():
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT set_config('audit.allow_truncate', 'on', false)")
        yield
    finally:
        use_role("app")
