"""The `ingest` management command: real Celery worker for the happy path; rejected inputs
fail before anything is written or queued."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from app.identity import Tier
from audit.models import AuditEvent, EventType
from broker.embeddings import embed_query
from retrieval.models import Document
from retrieval.selectors import chunks_search

ZEPHYR_TEXT = """# Zephyr Build Cluster Key Rotation

## Schedule

The Zephyr build cluster rotates its artifact signing keys every 45 days.
The rotation is run by the platform on-call engineer from the bastion host.

## Procedure

Generate the new key pair in the hardware security module, publish the public key to the
artifact registry, then retire the old key after a 24 hour overlap window.
"""


def test_ingest_with_wait_indexes_through_the_worker_and_applies_the_acl(
    celery_worker_thread, demo, tmp_path, principal_of
):
    path = tmp_path / "zephyr-key-rotation.md"
    path.write_text(ZEPHYR_TEXT)
    out = StringIO()
    call_command(
        "ingest",
        str(path),
        "--classification",
        "internal",
        "--allow-groups",
        "engineering",
        "--wait",
        "--timeout",
        "120",
        stdout=out,
    )
    document_id = int(out.getvalue().strip())

    document = Document.objects.get(pk=document_id)
    assert document.status == Document.Status.READY, document.error
    assert document.tier is Tier.INTERNAL
    assert document.title == "Zephyr Key Rotation"
    assert list(document.allowed_groups.values_list("name", flat=True)) == ["engineering"]
    assert not document.allowed_users.exists()
    assert document.all_authenticated is False
    assert document.chunks.count() >= 1
    assert "45 days" in " ".join(document.chunks.values_list("text", flat=True))
    assert AuditEvent.objects.filter(
        event_type=EventType.DOCUMENT_INGESTED, subject=f"document:{document_id}"
    ).exists()

    vector = embed_query("How often does the Zephyr build cluster rotate its signing keys?")
    bob_hits = chunks_search(principal_of("bob"), vector, k=5)
    assert bob_hits[0].document_id == document_id
    alice_hits = chunks_search(principal_of("alice"), vector, k=5)
    assert document_id not in {h.document_id for h in alice_hits}


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize(
    ("name", "data", "args", "message"),
    [
        pytest.param(
            "binary.md", b"# Title\n\x00\x01\x02binary", (), "binary content", id="nul-bytes"
        ),
        pytest.param("empty.md", b"", (), "empty document", id="empty"),
        pytest.param("blank.txt", b"  \n\t\n", (), "empty document", id="whitespace-only"),
        pytest.param("report.pdf", b"# Notes", (), "does not match the file name", id="fake-pdf"),
        pytest.param(
            "photo.png", b"\x89PNG\r\n\x1a\n", (), "unsupported file type", id="png-extension"
        ),
        pytest.param(
            "notes.md",
            b"# Notes\n\nSome text.",
            ("--allow-groups", "engineering,no-such-group"),
            "unknown users or groups in ACL: no-such-group",
            id="unknown-group",
        ),
        pytest.param(
            "notes.md",
            b"# Notes\n\nSome text.",
            ("--allow-users", "mallory"),
            "unknown users or groups in ACL: mallory",
            id="unknown-user",
        ),
    ],
)
def test_ingest_rejects_bad_input_with_clear_error_and_creates_no_document(
    tmp_path, name, data, args, message
):
    path = tmp_path / name
    path.write_bytes(data)
    before = Document.objects.count(), AuditEvent.objects.count()
    with pytest.raises(CommandError, match=message) as rejected:
        call_command("ingest", str(path), "--classification", "internal", *args)
    assert "Traceback" not in str(rejected.value)
    assert (Document.objects.count(), AuditEvent.objects.count()) == before


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("tier", ["secret", "top-secret", ""])
def test_ingest_rejects_unknown_tier_and_creates_no_document(tmp_path, tier):
    path = tmp_path / "notes.md"
    path.write_text("# Notes\n\nSome text.")
    before = Document.objects.count()
    with pytest.raises(CommandError, match="unknown tier") as rejected:
        call_command("ingest", str(path), "--classification", tier)
    assert "public, internal, confidential, restricted" in str(rejected.value)
    assert Document.objects.count() == before


@pytest.mark.usefixtures("demo")
def test_ingest_rejects_unreadable_path_and_creates_no_document(tmp_path):
    before = Document.objects.count()
    with pytest.raises(CommandError, match="cannot read"):
        call_command("ingest", str(tmp_path / "absent.md"), "--classification", "public")
    assert Document.objects.count() == before


@pytest.mark.usefixtures("demo")
def test_ingest_of_several_files_is_all_or_nothing(tmp_path):
    good = tmp_path / "good.md"
    good.write_text("# Good\n\nPlain text that would be accepted on its own.")
    bad = tmp_path / "bad.md"
    bad.write_bytes(b"\x00\x01binary")
    before = Document.objects.count()
    with pytest.raises(CommandError, match="binary"):
        call_command("ingest", str(good), str(bad), "--classification", "internal")
    assert Document.objects.count() == before
    assert not Document.objects.filter(source_name="good.md").exists()
