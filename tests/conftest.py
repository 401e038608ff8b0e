"""Shared fixtures. Everything runs against the real PostgreSQL (+pgvector) and Redis that
`make test` starts; nothing here replaces them."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.db.backends.signals import connection_created
from django.test import Client, TransactionTestCase

from app.identity import ALL_SCOPES, Principal, Tier
from app.models import User
from app.selectors import principal_for
from app.services import token_issue
from retrieval.rls import PRIVILEGED_GRANT
from tests.db_roles import owner_role, use_role


def _test_code_sees_all_rows(sender: Any, connection: Any, **kwargs: Any) -> None:
    """Row-level security shows nothing outside a scope. Test code itself (the main thread)
    reads fixtures directly, so its connection starts in the privileged mode; the code under
    test still sets its own principal scopes, and servers and workers started by tests run
    in other threads, on connections without this (tests/retrieval/test_rls.py proves
    the rule on both)."""
    if threading.current_thread() is threading.main_thread():
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('app.rls_mode', 'privileged', false),"
                " set_config('app.privileged_ceiling', %s, false),"
                " set_config('app.access_tokens', %s, false)",
                [str(int(max(Tier))), PRIVILEGED_GRANT],
            )


connection_created.connect(_test_code_sees_all_rows, dispatch_uid="tests-rls-privileged")


@pytest.fixture
def demo(db: None) -> None:
    """The demo accounts and corpus, indexed with the real embedding model."""
    from app.demo.seed import seed_demo

    seed_demo()


@pytest.fixture
def user_named() -> Callable[[str], User]:
    return lambda username: User.objects.get(username=username)


@pytest.fixture
def principal_of() -> Callable[..., Principal]:
    def build(username: str, scopes: frozenset[str] = ALL_SCOPES) -> Principal:
        return principal_for(
            User.objects.get(username=username), request_id="test-request", scopes=scopes
        )

    return build


@pytest.fixture
def bearer() -> Callable[..., dict[str, str]]:
    """Headers carrying a fresh API token for a user."""

    def make(
        username: str, scopes: frozenset[str] = ALL_SCOPES, ttl_s: int = 300
    ) -> dict[str, str]:
        raw, _ = token_issue(user=User.objects.get(username=username), scopes=scopes, ttl_s=ttl_s)
        return {"HTTP_AUTHORIZATION": f"Bearer {raw}"}

    return make


@pytest.fixture
def api(client: Client) -> Client:
    return client


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def asgi_server(transactional_db: None) -> Iterator[str]:
    """The real ASGI app under uvicorn on a loopback port (for SSE and the browser)."""
    import uvicorn

    from app.asgi import application

    port = _free_port()
    config = uvicorn.Config(
        application, host="127.0.0.1", port=port, log_level="warning", lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if time.monotonic() > deadline:
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture
def celery_worker_thread(transactional_db: None) -> Iterator[Any]:
    """A real Celery worker (solo pool, in a thread) consuming from the real Redis broker."""
    from celery.contrib.testing.worker import start_worker

    from app.celery import celery_app

    with start_worker(celery_app, pool="solo", perform_ping_check=False, shutdown_timeout=20):
        yield celery_app


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """The owner role creates and migrates the test database, as in production."""
    use_role("owner")


@pytest.fixture(scope="session")
def django_db_setup(django_db_setup: None, django_db_blocker: Any) -> Iterator[None]:
    """Tests run as the application role. Seed the demo once per session; tests roll back
    over it. A transactional test's flush empties it, and the `demo` fixture re-seeds on
    demand. The owner drops the database at the end."""
    from app.demo.seed import seed_demo

    use_role("app")
    with django_db_blocker.unblock():
        seed_demo()
    yield
    use_role("owner")


# Django's stubs do not list this hook; it is where TransactionTestCase flushes.
_flush_as_app_role = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]


def _flush_as_owner(self: TransactionTestCase) -> None:
    """The application role may not TRUNCATE audit rows; resetting the test database
    between transactional tests is the owner's job, with the audit truncate guard's
    explicit opt-in."""
    with owner_role(allow_audit_truncate=True):
        _flush_as_app_role(self)


TransactionTestCase._fixture_teardown = _flush_as_owner  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _force_login_counts_as_mfa(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Client.force_login` skips authentication altogether; for staff it now also marks
    the session as having passed MFA, so admin tests need not replay a TOTP code. The MFA
    requirement itself is proved through the real sign-in flow in tests/app/test_mfa.py."""
    import time as _time

    from allauth.account.internal.flows.login import (
        _AUTHENTICATION_METHODS_USER_SESSION_KEY,
        AUTHENTICATION_METHODS_SESSION_KEY,
    )

    original = Client.force_login

    def force_login(self: Client, user: Any, backend: str | None = None) -> None:
        original(self, user, backend)
        if user.is_staff:
            session = self.session
            session[_AUTHENTICATION_METHODS_USER_SESSION_KEY] = str(user.pk)
            session[AUTHENTICATION_METHODS_SESSION_KEY] = [
                {"method": "mfa", "type": "totp", "at": _time.time()}
            ]
            session.save()

    monkeypatch.setattr(Client, "force_login", force_login)
