"""PostgreSQL row-level security enforces the access rule underneath the ORM filters."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import DatabaseError, connection, connections, transaction

from app.identity import Tier
from retrieval.models import Chunk, Document
from retrieval.rls import principal_scope, privileged_scope
from retrieval.selectors import database_role_is_rls_subject, documents_visible_to

FORECAST = "Q3 2026 Revenue Forecast"


def _in_fresh_connection(work: Callable[[], Any]) -> Any:
    """Run `work` on a connection of its own, as a web or worker thread would have."""
    result: dict[str, Any] = {}

    def run() -> None:
        try:
            result["value"] = work()
        except BaseException as exc:
            result["error"] = exc
        finally:
            connections.close_all()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


@pytest.mark.usefixtures("demo")
def test_rls_hides_chunks_when_query_forgets_acl_filter(principal_of):
    bob = principal_of("bob")
    forecast = Document.objects.get(title=FORECAST)
    allowed = set(documents_visible_to(bob).values_list("pk", flat=True))
    with principal_scope(bob):
        # No ACL filter at all: the database applies it.
        documents = set(Document.objects.values_list("pk", flat=True))
        chunk_documents = set(Chunk.objects.values_list("document_id", flat=True))
        assert not Chunk.objects.filter(document_id=forecast.pk).exists()
    assert documents == allowed
    assert chunk_documents <= allowed
    assert forecast.pk not in documents


@pytest.mark.usefixtures("demo")
def test_rls_gives_each_principal_their_own_rows(principal_of):
    forecast = Document.objects.get(title=FORECAST)
    with principal_scope(principal_of("alice")):
        assert Document.objects.filter(pk=forecast.pk).exists()
        with principal_scope(principal_of("bob")):  # nested: the inner scope wins
            assert not Document.objects.filter(pk=forecast.pk).exists()
        assert Document.objects.filter(pk=forecast.pk).exists()  # and is undone on exit


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("demo")
def test_rls_shows_nothing_outside_any_scope():
    assert Document.objects.exists()  # test code is privileged; a fresh connection is not

    def count() -> tuple[int, int]:
        return Document.objects.count(), Chunk.objects.count()

    assert _in_fresh_connection(count) == (0, 0)

    def count_privileged() -> int:
        with privileged_scope("test"):
            return Document.objects.count()

    assert _in_fresh_connection(count_privileged) == Document.objects.count()


@pytest.mark.usefixtures("demo")
def test_rls_refuses_writes_in_a_principal_scope(principal_of):
    alice = principal_of("alice")
    forecast = Document.objects.get(title=FORECAST)
    with principal_scope(alice):
        assert Document.objects.filter(pk=forecast.pk).update(title="renamed") == 0
        assert Chunk.objects.filter(document_id=forecast.pk).delete()[0] == 0
    chunk = Chunk.objects.filter(document=forecast).first()
    assert chunk is not None
    with (
        pytest.raises(DatabaseError, match="row-level security"),
        transaction.atomic(),
        principal_scope(alice),
    ):
        Chunk.objects.create(
            document=forecast, position=9999, text="planted", passage_id=chunk.passage_id
        )
    forecast.refresh_from_db()
    assert forecast.title == FORECAST


@pytest.mark.django_db
def test_application_role_cannot_bypass_row_level_security():
    assert database_role_is_rls_subject()
    with connection.cursor() as cursor:
        cursor.execute("SELECT rolsuper, rolbypassrls FROM pg_roles WHERE rolname = current_user")
        assert cursor.fetchone() == (False, False)


@pytest.mark.django_db
def test_readyz_reports_row_level_security(client):
    body = client.get("/readyz").json()
    assert body["checks"]["row_level_security"] is True


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("demo")
def test_staff_admin_pages_see_every_document_through_the_privileged_scope(user_named):
    from django.test import Client

    admin, bob = user_named("admin"), user_named("bob")

    def admin_changelist(user: Any) -> tuple[int, str]:
        client = Client()
        client.force_login(user)
        response = client.get("/admin/retrieval/document/")
        return response.status_code, response.content.decode()

    status, page = _in_fresh_connection(lambda: admin_changelist(admin))
    assert status == 200
    assert FORECAST in page  # not shared with admin's groups: seen only via the scope
    assert "2026 Salary Bands" in page
    status, _ = _in_fresh_connection(lambda: admin_changelist(bob))
    assert status == 302  # not staff: no admin, and no privileged scope


@pytest.mark.usefixtures("demo")
def test_waiting_upload_bytes_are_readable_only_through_the_privileged_path(principal_of):
    from retrieval.models import PendingUpload
    from retrieval.services import document_create

    document = document_create(
        title="Memo",
        classification=Tier.INTERNAL,
        source_name="memo.md",
        data=b"# Memo",
        all_authenticated=True,
    )
    assert PendingUpload.objects.filter(document=document).exists()  # privileged test code
    with principal_scope(principal_of("admin")):
        assert Document.objects.filter(pk=document.pk).exists()  # the document is readable
        assert not PendingUpload.objects.exists()  # its raw file is not
        assert PendingUpload.objects.filter(document=document).update(data=b"swapped") == 0
