"""A changed file becomes a new version of its document: same ACL, new content hash and
version, chunks replaced in one transaction; the same bytes again change nothing."""

from __future__ import annotations

from io import StringIO

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command

from app.identity import Tier
from audit.models import AuditEvent, EventType
from retrieval.models import Document, PendingUpload
from retrieval.selectors import hybrid_search
from retrieval.services import (
    document_create,
    document_index,
    document_replace_content,
    ingestion_run,
)

V1 = b"# Badge policy\n\nVisitor badges are collected at the amber desk on floor two.\n"
V2 = b"# Badge policy\n\nVisitor badges are now collected at the cobalt kiosk in the lobby.\n"


def _document(principal_of) -> Document:
    document = document_create(
        title="Badge policy",
        classification=Tier.INTERNAL,
        source_name="badges.md",
        data=V1,
        allow_groups=["engineering"],
    )
    document_index(document_id=document.pk)
    assert _found(principal_of, "amber desk", document)
    return document


def _found(principal_of, query: str, document: Document) -> bool:
    hits = hybrid_search(principal_of("bob"), query, k=3)
    return any(h.document_id == document.pk and query.split()[0] in h.text for h in hits)


@pytest.mark.usefixtures("demo")
def test_a_new_version_replaces_the_chunks_and_keeps_the_acl(principal_of):
    document = _document(principal_of)
    old_chunks = set(document.chunks.values_list("pk", flat=True))
    document, changed = document_replace_content(
        document_id=document.pk, source_name="badges-v2.md", data=V2, actor_id=None
    )
    assert changed
    # Until the new version is indexed, the old chunks, text and version keep serving.
    document.refresh_from_db()
    assert document.version == 1
    assert "amber desk" in document.text
    assert set(document.chunks.values_list("pk", flat=True)) == old_chunks
    document_index(document_id=document.pk)
    document.refresh_from_db()
    assert document.version == 2
    assert document.source_name == "badges-v2.md"
    assert "cobalt kiosk" in document.text
    assert not document.chunks.filter(pk__in=old_chunks).exists()
    assert _found(principal_of, "cobalt kiosk", document)
    assert not _found(principal_of, "amber desk", document)
    # The ACL carried over: alice (finance) still cannot see it.
    assert all(
        h.document_id != document.pk
        for h in hybrid_search(principal_of("alice"), "cobalt kiosk", k=5)
    )
    hits = hybrid_search(principal_of("bob"), "cobalt kiosk", k=3)
    assert any(h.document_version == 2 for h in hits if h.document_id == document.pk)
    event = AuditEvent.objects.filter(
        event_type=EventType.DOCUMENT_INGESTED, subject=f"document:{document.pk}"
    ).latest("id")
    assert event.decision == "new_version"
    assert event.metadata["version"] == 2


@pytest.mark.usefixtures("demo")
def test_the_same_bytes_again_make_no_new_version(principal_of):
    document = _document(principal_of)
    again, changed = document_replace_content(
        document_id=document.pk, source_name="badges.md", data=V1, actor_id=None
    )
    assert not changed
    assert again.version == 1


@pytest.mark.usefixtures("demo")
def test_api_new_version_needs_permission_and_hides_unreadable_documents(
    client, bearer, principal_of, user_named
):
    document = _document(principal_of)
    url = f"/api/v1/documents/{document.pk}/content"

    def post(user: str, data: bytes):
        return client.post(url, data={"file": SimpleUploadedFile("b.md", data)}, **bearer(user))

    assert post("alice", V2).status_code == 404  # alice may not read it: it does not exist
    assert post("bob", V2).status_code == 403  # bob reads it but may not change documents
    user_named("bob").user_permissions.add(Permission.objects.get(codename="change_document"))
    unchanged = post("bob", V1)
    assert unchanged.status_code == 200
    assert unchanged.json() == {"document": document.pk, "version": 1, "changed": False}
    response = post("bob", V2)
    assert response.status_code == 202
    job = ingestion_run(job_id=response.json()["job"])
    assert job.state == "succeeded"
    assert _found(principal_of, "cobalt kiosk", document)


@pytest.mark.usefixtures("demo")
def test_ingest_replace_stores_a_new_version(principal_of, tmp_path):
    document = _document(principal_of)
    path = tmp_path / "badges.md"
    path.write_bytes(V2)
    out = StringIO()
    call_command("ingest", str(path), "--replace", str(document.pk), stdout=out)
    assert "queued" in out.getvalue()
    out = StringIO()
    call_command("ingest", str(path), "--replace", str(document.pk), stdout=out)
    assert "unchanged (version 1)" in out.getvalue()  # already waiting for the worker
    document_index(document_id=document.pk)
    document.refresh_from_db()
    assert document.version == 2
    out = StringIO()
    call_command("ingest", str(path), "--replace", str(document.pk), stdout=out)
    assert "unchanged (version 2)" in out.getvalue()


@pytest.mark.usefixtures("demo")
def test_a_newer_upload_that_arrives_during_indexing_stays_queued(principal_of):
    """The worker removes only the file it indexed: a version uploaded while it ran is not
    lost, and the next job indexes it."""
    document = _document(principal_of)
    document_replace_content(document_id=document.pk, source_name="v2.md", data=V2, actor_id=None)
    v3 = V2.replace(b"cobalt kiosk", b"saffron gate")
    seen: list[int] = []

    def upload_v3_midway(percent: int) -> None:
        if percent >= 20 and not seen:
            seen.append(percent)
            document_replace_content(
                document_id=document.pk, source_name="v3.md", data=v3, actor_id=None
            )

    document_index(document_id=document.pk, on_progress=upload_v3_midway)
    document.refresh_from_db()
    assert (document.version, document.source_name) == (2, "v2.md")
    assert PendingUpload.objects.get(document=document).source_name == "v3.md"
    document_index(document_id=document.pk)
    document.refresh_from_db()
    assert (document.version, document.source_name) == (3, "v3.md")
    assert not PendingUpload.objects.filter(document=document).exists()
    assert _found(principal_of, "saffron gate", document)


@pytest.mark.django_db
def test_ingest_of_a_new_document_still_needs_a_classification(tmp_path):
    from django.core.management.base import CommandError

    path = tmp_path / "badges.md"
    path.write_bytes(V1)
    with pytest.raises(CommandError, match="--classification is required"):
        call_command("ingest", str(path))
    assert not Document.objects.filter(source_name="badges.md").exists()


@pytest.mark.usefixtures("demo")
def test_admin_shows_a_version_waiting_for_indexing(client, principal_of, user_named):
    document = _document(principal_of)
    client.force_login(user_named("admin"))
    page = client.get(f"/admin/retrieval/document/{document.pk}/change/")
    assert page.status_code == 200
    assert "badges-v2.md" not in page.content.decode()
    document_replace_content(
        document_id=document.pk, source_name="badges-v2.md", data=V2, actor_id=None
    )
    page = client.get(f"/admin/retrieval/document/{document.pk}/change/")
    assert "badges-v2.md" in page.content.decode()
    assert "serves until it is indexed" in page.content.decode()
