"""Each chunk carries a copy of its document's tier and ACL, kept in step by the database.

The row-level-security policy and the SQL filter on chunks read only that copy (so a
filtered HNSW scan can test each row it visits). These tests prove the copy cannot drift
from the document, whichever path changes the document, and that the copy is what the
database enforces.
"""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group

from app.identity import Tier
from retrieval.models import Chunk, Document
from retrieval.rls import principal_scope
from retrieval.selectors import chunks_search
from retrieval.services import document_mark_failed

FORECAST = "Q3 2026 Revenue Forecast"


def _chunk_access(document: Document) -> set[tuple[int, bool, tuple[int, ...], tuple[int, ...]]]:
    return {
        (c.tier, c.all_authenticated, tuple(c.readable_user_ids), tuple(c.readable_group_ids))
        for c in Chunk.objects.filter(document=document)
    }


def _visible_chunk_ids(principal, document: Document) -> set[int]:
    with principal_scope(principal):
        # No ACL filter: only the database's policy decides.
        return set(Chunk.objects.filter(document=document).values_list("pk", flat=True))


@pytest.mark.usefixtures("demo")
def test_chunks_copy_their_documents_tier_and_grants():
    finance = Group.objects.get(name="finance")
    forecast = Document.objects.get(title=FORECAST)
    assert forecast.chunks.exists()
    assert _chunk_access(forecast) == {(int(Tier.CONFIDENTIAL), False, (), (finance.pk,))}


@pytest.mark.usefixtures("demo")
def test_grant_changes_reach_the_chunks_without_reindexing(principal_of, user_named):
    bob, forecast = principal_of("bob"), Document.objects.get(title=FORECAST)
    chunk_ids = set(forecast.chunks.values_list("pk", flat=True))
    engineering = Group.objects.get(name="engineering")
    forecast.classification = int(Tier.INTERNAL)  # bob's clearance
    forecast.save()
    assert _visible_chunk_ids(bob, forecast) == set()

    forecast.allowed_groups.add(engineering)
    assert _visible_chunk_ids(bob, forecast) == chunk_ids
    forecast.allowed_groups.remove(engineering)
    assert _visible_chunk_ids(bob, forecast) == set()

    forecast.allowed_users.add(user_named("bob"))
    assert _visible_chunk_ids(bob, forecast) == chunk_ids
    forecast.allowed_users.clear()
    assert _visible_chunk_ids(bob, forecast) == set()

    Document.objects.filter(pk=forecast.pk).update(all_authenticated=True)  # a bulk update too
    assert _visible_chunk_ids(bob, forecast) == chunk_ids
    # Same chunks throughout: nothing was re-embedded.
    assert set(forecast.chunks.values_list("pk", flat=True)) == chunk_ids


@pytest.mark.usefixtures("demo")
def test_raising_the_tier_hides_the_chunks_at_once(principal_of):
    alice, forecast = principal_of("alice"), Document.objects.get(title=FORECAST)
    assert _visible_chunk_ids(alice, forecast)
    Document.objects.filter(pk=forecast.pk).update(classification=int(Tier.RESTRICTED))
    assert _visible_chunk_ids(alice, forecast) == set()
    assert not any(h.document_id == forecast.pk for h in _search(alice, forecast))


def _search(principal, document: Document):
    vector = list(document.chunks.values_list("passage__embedding", flat=True)[:1])[0]
    return chunks_search(principal, [float(x) for x in vector], k=5)


@pytest.mark.usefixtures("demo")
def test_the_application_cannot_write_a_wider_grant_onto_a_chunk(principal_of):
    bob, forecast = principal_of("bob"), Document.objects.get(title=FORECAST)
    chunk = forecast.chunks.first()
    assert chunk is not None
    # A forged copy on insert and on update is replaced by the document's real ACL.
    forged = Chunk.objects.create(
        document=forecast,
        position=10_000,
        text="forged",
        passage=chunk.passage,
        tier=int(Tier.PUBLIC),
        all_authenticated=True,
        readable_user_ids=[bob.user_id],
        readable_group_ids=list(bob.group_ids),
    )
    Chunk.objects.filter(pk=chunk.pk).update(all_authenticated=True, tier=int(Tier.PUBLIC))
    assert _visible_chunk_ids(bob, forecast) == set()
    forged.refresh_from_db()
    assert forged.tier == int(Tier.CONFIDENTIAL)
    assert not forged.all_authenticated
    assert forged.readable_user_ids == []


@pytest.mark.usefixtures("demo")
def test_a_failed_reindex_keeps_serving_the_last_good_chunks(principal_of):
    alice, forecast = principal_of("alice"), Document.objects.get(title=FORECAST)
    before = _visible_chunk_ids(alice, forecast)
    document_mark_failed(document_id=forecast.pk, error="indexing failed: test")
    forecast.refresh_from_db()
    assert forecast.status == Document.Status.READY
    assert "test" in forecast.error
    assert _visible_chunk_ids(alice, forecast) == before
    assert any(h.document_id == forecast.pk for h in _search(alice, forecast))
