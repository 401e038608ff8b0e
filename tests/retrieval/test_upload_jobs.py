"""Upload through the API, follow the ingestion job, retry a failed one."""

from __future__ import annotations

import time

import pytest
from django.contrib.auth.models import Permission
from django.core.files.uploadedfile import SimpleUploadedFile

from app.identity import Tier
from retrieval.errors import IngestionRejected
from retrieval.models import Document, IngestionJob, PendingUpload
from retrieval.selectors import hybrid_search
from retrieval.services import (
    document_create,
    document_replace_content,
    ingestion_retry,
    ingestion_run,
    ingestion_submit,
)

RUNBOOK = b"# Kafka Rebalance Runbook\n\nWhen consumer lag on topic orders-v7 exceeds 90000, " \
    b"pause the zebra-sync connector before the rebalance.\n"  # fmt: skip


def _upload(client, headers, *, name="kafka.md", data=RUNBOOK, **fields):
    form = {"file": SimpleUploadedFile(name, data), "classification": "internal", **fields}
    return client.post("/api/v1/documents", data=form, **headers)


@pytest.mark.usefixtures("celery_worker_thread", "demo")
def test_staff_upload_is_indexed_by_the_worker_and_acl_applies(client, bearer, principal_of):
    response = _upload(client, bearer("admin"), title="Kafka runbook", allow_groups="engineering")
    assert response.status_code == 202, response.content
    job_id = response.json()["job"]
    deadline = time.monotonic() + 60
    while True:
        job = client.get(f"/api/v1/ingestion-jobs/{job_id}", **bearer("admin")).json()
        if job["state"] in {"succeeded", "failed"} or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert job["state"] == "succeeded", job
    assert job["progress"] == 100
    document = Document.objects.get(pk=job["document"])
    assert document.title == "Kafka runbook"
    assert document.chunks.exists()
    assert any(
        h.document_id == document.pk
        for h in hybrid_search(principal_of("bob"), "zebra-sync connector", k=5)
    )
    assert all(
        h.document_id != document.pk
        for h in hybrid_search(principal_of("alice"), "zebra-sync connector", k=5)
    )


@pytest.mark.usefixtures("demo")
def test_upload_without_permission_is_403_and_stores_nothing(client, bearer):
    before = Document.objects.count()
    response = _upload(client, bearer("alice"))
    assert response.status_code == 403
    assert response.json()["error"] == "forbidden"
    assert Document.objects.count() == before


@pytest.mark.usefixtures("demo")
def test_nobody_may_classify_above_their_own_clearance(client, bearer, user_named):
    bob = user_named("bob")  # clearance internal
    bob.user_permissions.add(Permission.objects.get(codename="add_document"))
    assert _upload(client, bearer("bob"), classification="confidential").status_code == 403
    assert _upload(client, bearer("bob"), classification="internal").status_code == 202


@pytest.mark.usefixtures("demo")
def test_oversized_upload_is_413(client, bearer, settings):
    settings.INGEST_MAX_BYTES = 1024 * 1024
    response = _upload(client, bearer("admin"), data=b"a" * (1024 * 1024 + 1))
    assert response.status_code == 413
    assert response.json()["error"] == "payload_too_large"


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    ("name", "data"), [("x.pdf", b"# not a pdf"), ("x.md", b"\x00\x01"), ("x.md", b"")]
)
def test_unreadable_upload_is_400_with_reason_and_stores_nothing(client, bearer, name, data):
    before = Document.objects.count(), IngestionJob.objects.count()
    response = _upload(client, bearer("admin"), name=name, data=data)
    assert response.status_code == 400
    assert response.json()["error"] in {"rejected_document", "invalid_request"}
    assert (Document.objects.count(), IngestionJob.objects.count()) == before


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("report.pdf", b"%PDF-1.4 broken", "report.pdf: malformed PDF"),
        ("notes.md", "Café crème".encode("latin-1"), "notes.md: not valid UTF-8"),
        ("page.html", b"<html><script>only()</script></html>", "no extractable text"),
    ],
)
def test_a_file_that_fails_to_parse_is_rejected_on_its_job_and_nothing_is_indexed(
    client, bearer, name, data, reason
):
    """The web process only does cheap checks; parsing happens in the ingestion worker,
    which records why a file was rejected on the job."""
    response = _upload(client, bearer("admin"), name=name, data=data)
    assert response.status_code == 202, response.content
    body = response.json()
    document = Document.objects.get(pk=body["document"])
    assert document.text == ""  # not parsed by the web process
    assert bytes(PendingUpload.objects.get(document=document).data) == data

    ingestion_run(job_id=body["job"])
    job = client.get(f"/api/v1/ingestion-jobs/{body['job']}", **bearer("admin")).json()
    assert job["state"] == "failed"
    assert job["error"].startswith("rejected: ")
    assert reason in job["error"]
    document.refresh_from_db()
    assert document.status == Document.Status.FAILED
    assert (document.text, document.chunks.count()) == ("", 0)


@pytest.mark.usefixtures("demo")
def test_a_rejected_new_version_leaves_the_indexed_version_serving(principal_of):
    document = document_create(
        title="Badges", classification=Tier.PUBLIC, source_name="b.md", data=RUNBOOK,
        all_authenticated=True,
    )  # fmt: skip
    assert (
        ingestion_run(job_id=ingestion_submit(document_id=document.pk, actor_id=None).pk).state
        == "succeeded"
    )
    document, changed = document_replace_content(
        document_id=document.pk, source_name="b.md", data=b"\xff\xfe broken", actor_id=None
    )
    assert changed
    job = ingestion_run(job_id=ingestion_submit(document_id=document.pk, actor_id=None).pk)
    assert job.state == "failed"
    assert "not valid UTF-8" in job.error
    document.refresh_from_db()
    assert (document.status, document.version) == (Document.Status.READY, 1)
    assert "rejected" in document.error
    hits = hybrid_search(principal_of("alice"), "zebra-sync connector", k=3)
    assert any(h.document_id == document.pk for h in hits)


@pytest.mark.usefixtures("demo")
def test_job_is_visible_to_its_submitter_and_staff_only(client, bearer, user_named):
    document = document_create(
        title="t", classification=Tier.PUBLIC, source_name="t.md", data=b"some text here"
    )
    job = ingestion_submit(document_id=document.pk, actor_id=user_named("carol").pk)
    assert client.get(f"/api/v1/ingestion-jobs/{job.pk}", **bearer("carol")).status_code == 200
    assert client.get(f"/api/v1/ingestion-jobs/{job.pk}", **bearer("admin")).status_code == 200
    assert client.get(f"/api/v1/ingestion-jobs/{job.pk}", **bearer("bob")).status_code == 404


@pytest.mark.usefixtures("demo")
def test_failed_job_records_why_and_can_be_retried(settings, tmp_path):
    document = document_create(
        title="t", classification=Tier.PUBLIC, source_name="t.md", data=b"retry me, please"
    )
    job = ingestion_submit(document_id=document.pk, actor_id=None)
    settings.EMBEDDING_MODEL_DIR = str(tmp_path)  # no weights there: indexing must fail
    failed = ingestion_run(job_id=job.pk)
    assert failed.state == IngestionJob.State.FAILED
    assert "ModelIntegrityError" in failed.error
    document.refresh_from_db()
    assert document.status == Document.Status.FAILED

    settings.EMBEDDING_MODEL_DIR = ""
    with pytest.raises(IngestionRejected, match="only a failed job"):
        ingestion_retry(job=IngestionJob.objects.create(document_id=document.pk), actor_id=None)
    retried = ingestion_run(job_id=ingestion_retry(job=failed, actor_id=None).pk)
    assert retried.state == IngestionJob.State.SUCCEEDED
    document.refresh_from_db()
    assert document.status == Document.Status.READY
