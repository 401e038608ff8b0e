"""Passages: each distinct chunk text is embedded and indexed once, whatever number of
documents hold it. Its access tokens (kept by triggers) and row-level security decide who
may reach it; a search returns a text once, through a chunk the asker may read."""

from __future__ import annotations

import pytest
from django.db import DatabaseError, connection, transaction

from app.identity import Tier
from app.models import User
from retrieval import services
from retrieval.models import Chunk, Document, Passage
from retrieval.rls import principal_scope
from retrieval.selectors import hybrid_search
from retrieval.services import (
    document_acl_update,
    document_create,
    document_delete,
    document_index,
    document_replace_content,
)

SHARED = """# Lantern Expense Rules

## Taxis

Taxis to the Lantern depot are refunded up to 40 euros when the night shuttle is not running.
"""
OTHER = """# Quarry Parking

## Permits

Quarry site parking permits are renewed every March at the gatehouse office.
"""
# Long enough for several chunks (about 900 characters each), one per section.
SECTIONS = "\n".join(
    f"## Section {n}\n\n" + f"Rule {n} of the Lantern depot handbook covers shift {n}. " * 12
    for n in range(1, 5)
)
QUERY = "Lantern depot taxi refund"


def make_user(username: str, *, clearance: Tier) -> User:
    return User.objects.create_user(username, password=None, clearance=int(clearance))


def _indexed(title: str, text: str, tier: Tier, **acl) -> Document:
    document = document_create(
        title=title, classification=tier, source_name=f"{title}.md", data=text.encode(), **acl
    )
    return document_index(document_id=document.pk)


def _collect_now() -> None:
    """Run the deferred triggers that a commit would run (the test never commits)."""
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


def _a_session_waits_for_a_lock(timeout: float = 60.0) -> bool:
    """Poll until another session of this database waits on a lock."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
            )
            if cursor.fetchone()[0]:
                return True
        time.sleep(0.05)
    return False


def _passage_ids(document: Document) -> set[int]:
    return set(Chunk.objects.filter(document=document).values_list("passage_id", flat=True))


@pytest.mark.django_db
def test_copies_of_a_text_are_one_passage_and_one_search_result(principal_of):
    make_user("erin", clearance=Tier.INTERNAL)
    first = _indexed("Lantern rules", SHARED, Tier.INTERNAL, all_authenticated=True)
    second = _indexed("Lantern rules (copy)", SHARED, Tier.INTERNAL, all_authenticated=True)
    assert _passage_ids(first) == _passage_ids(second)
    assert Passage.objects.filter(pk__in=_passage_ids(first)).count() == first.chunks.count()

    hits = hybrid_search(principal_of("erin"), QUERY, k=5)
    texts = [hit.text for hit in hits]
    assert any("40 euros" in text for text in texts)
    assert len(texts) == len(set(texts))  # the copy is not a second result


@pytest.mark.django_db
def test_a_shared_text_is_reached_only_through_a_document_the_asker_may_read(principal_of):
    make_user("erin", clearance=Tier.INTERNAL)
    make_user("finn", clearance=Tier.PUBLIC)
    hidden = _indexed("Lantern board pack", SHARED, Tier.RESTRICTED)
    shown = _indexed("Lantern rules", SHARED, Tier.INTERNAL, all_authenticated=True)

    hits = [h for h in hybrid_search(principal_of("erin"), QUERY, k=5) if "40 euros" in h.text]
    assert [h.document_id for h in hits] == [shown.pk]
    assert not any(
        h.document_id == hidden.pk for h in hybrid_search(principal_of("finn"), QUERY, k=5)
    )


@pytest.mark.django_db
def test_row_level_security_hides_passages_no_readable_chunk_holds(principal_of):
    """An unfiltered query on passages inside a principal's scope: only the texts of
    documents the principal may read, and no write at all."""
    make_user("erin", clearance=Tier.INTERNAL)
    hidden = _indexed("Quarry board pack", OTHER, Tier.RESTRICTED)
    shown = _indexed("Lantern rules", SHARED, Tier.INTERNAL, all_authenticated=True)
    erin = principal_of("erin")
    with principal_scope(erin):
        visible = set(Passage.objects.values_list("pk", flat=True))
        assert Passage.objects.filter(pk__in=_passage_ids(hidden)).update(access=["a@0"]) == 0
    assert _passage_ids(shown) <= visible
    assert not visible & _passage_ids(hidden)
    assert Passage.objects.filter(pk__in=_passage_ids(hidden)).exists()  # there, but hidden
    with (
        pytest.raises(DatabaseError, match="row-level security"),
        transaction.atomic(),
        principal_scope(erin),
    ):
        Passage.objects.create(digest="planted", embedding=[0.0] * 383 + [1.0])


@pytest.mark.django_db
def test_an_acl_change_reaches_the_passages_at_once(principal_of):
    make_user("erin", clearance=Tier.INTERNAL)
    document = _indexed("Lantern rules", SHARED, Tier.INTERNAL)

    def erin_finds_it() -> bool:
        return any("40 euros" in h.text for h in hybrid_search(principal_of("erin"), QUERY, k=5))

    assert not erin_finds_it()
    document_acl_update(
        document=document, allow_users=["erin"], allow_groups=[], all_authenticated=False,
        actor_id=None,
    )  # fmt: skip
    erin = principal_of("erin")
    assert all(
        f"u{erin.user_id}@{int(Tier.INTERNAL)}" in passage.access
        for passage in Passage.objects.filter(pk__in=_passage_ids(document))
    )
    assert erin_finds_it()
    document_acl_update(
        document=document, allow_users=[], allow_groups=[], all_authenticated=False,
        actor_id=None,
    )  # fmt: skip
    assert not erin_finds_it()


@pytest.mark.django_db
def test_deleting_the_last_document_of_a_text_deletes_its_embedding():
    first = _indexed("Lantern rules", SHARED, Tier.INTERNAL, all_authenticated=True)
    second = _indexed("Lantern rules (copy)", SHARED, Tier.INTERNAL, all_authenticated=True)
    passages = _passage_ids(first)

    document_delete(document=first, actor_id=None)
    _collect_now()
    assert Passage.objects.filter(pk__in=passages).count() == len(passages)  # still held
    document_delete(document=second, actor_id=None)
    _collect_now()
    assert not Passage.objects.filter(pk__in=passages).exists()


@pytest.mark.django_db
def test_a_new_version_embeds_only_its_new_texts(monkeypatch):
    embedded: list[str] = []
    real_embed = services.embed_texts

    def counting_embed(texts, **kwargs):
        embedded.extend(texts)
        return real_embed(texts, **kwargs)

    monkeypatch.setattr(services, "embed_texts", counting_embed)
    document = _indexed("Lantern handbook", SECTIONS, Tier.INTERNAL)
    before = {c.text: c.passage_id for c in document.chunks.all()}
    assert len(before) == 4
    assert len(embedded) == len(before)
    embedded.clear()

    changed = SECTIONS.replace("covers shift 3.", "covers shift 7.")
    document_replace_content(
        document_id=document.pk, source_name="Lantern handbook.md", data=changed.encode(),
        actor_id=None,
    )  # fmt: skip
    document_index(document_id=document.pk)
    _collect_now()  # the old chunks' passages that the new version reuses must survive
    after = {c.text: c.passage_id for c in document.chunks.all()}
    kept = set(before) & set(after)
    assert kept
    assert all(before[text] == after[text] for text in kept)
    assert sorted(embedded) == sorted(set(after) - kept)
    assert Passage.objects.filter(pk__in=after.values()).count() == len(set(after.values()))
    assert not Passage.objects.filter(
        pk__in={before[text] for text in set(before) - set(after)}
    ).exists()


@pytest.mark.django_db(transaction=True)
def test_two_documents_indexed_at_once_both_reach_their_shared_passage(monkeypatch):
    """The first indexer holds its transaction open after writing its chunks; the second
    indexes another document holding the same, already stored, text. The second's trigger
    waits for the passage row the first's trigger updated, and once the first commits it
    recomputes the access from both documents' chunks: neither reader is left out."""
    import threading

    from django.db import connection as main_connection

    erin = make_user("erin", clearance=Tier.INTERNAL)
    finn = make_user("finn", clearance=Tier.INTERNAL)
    _indexed("Lantern rules (archive)", SHARED, Tier.INTERNAL)  # the passage exists
    first = document_create(
        title="Lantern rules (erin)", classification=Tier.INTERNAL, source_name="e.md",
        data=SHARED.encode(), allow_users=["erin"],
    )  # fmt: skip
    second = document_create(
        title="Lantern rules (finn)", classification=Tier.INTERNAL, source_name="f.md",
        data=SHARED.encode(), allow_users=["finn"],
    )  # fmt: skip

    inside, release = threading.Event(), threading.Event()
    real_refresh = services._refresh_search_vectors

    def refresh_then_hold(document_id: int) -> None:
        real_refresh(document_id)
        if document_id == first.pk:
            inside.set()
            release.wait(timeout=30)

    monkeypatch.setattr(services, "_refresh_search_vectors", refresh_then_hold)
    errors: list[BaseException] = []

    def index(document: Document) -> None:
        from django.db import connection

        try:
            document_index(document_id=document.pk)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()

    one = threading.Thread(target=index, args=(first,))
    one.start()
    assert inside.wait(timeout=60)
    two = threading.Thread(target=index, args=(second,))
    two.start()
    assert _a_session_waits_for_a_lock(), "the second indexer never reached the shared row"
    release.set()
    one.join(timeout=60)
    two.join(timeout=60)
    assert not errors
    assert not one.is_alive()
    assert not two.is_alive()

    main_connection.close()  # a new connection, in the tests' privileged mode
    (passage,) = Passage.objects.filter(
        pk__in=_passage_ids(first) | _passage_ids(second)
    ).values_list("access", flat=True)
    assert f"u{erin.pk}@{int(Tier.INTERNAL)}" in passage
    assert f"u{finn.pk}@{int(Tier.INTERNAL)}" in passage


@pytest.mark.django_db(transaction=True)  # the owner's ANALYZE needs committed rows
def test_ef_search_scales_with_the_passages_the_graph_holds(principal_of, settings, monkeypatch):
    """The graph has a node per distinct text, so ef_search grows with the passage count,
    not the chunk count: four copies of a document add chunks but no graph nodes."""
    from retrieval import selectors
    from tests.retrieval.statistics import analysed_chunks_and_passages

    make_user("erin", clearance=Tier.INTERNAL)
    for n in range(4):
        _indexed(f"Copy {n}", SHARED + SECTIONS, Tier.PUBLIC, all_authenticated=True)
    chunks, passages = analysed_chunks_and_passages()
    assert chunks >= 2 * passages > 0  # the copies share their passages
    monkeypatch.setattr(selectors, "REFERENCE_CHUNKS", passages / 4)
    settings.RETRIEVAL_HNSW_EF_SEARCH = 120
    erin = principal_of("erin")
    with principal_scope(erin), selectors.graph_scan(2), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('hnsw.ef_search')::int")
        (ef_search,) = cursor.fetchone()
    assert ef_search == round(120 * 4**selectors.EF_SEARCH_GROWTH)
