"""Every read of documents and chunks applies the ACL in SQL: clearance >= tier AND a grant
(user, group or everyone) AND the document is ready."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext

from app.identity import Tier
from app.models import User
from broker.embeddings import embed_query
from retrieval.models import Document
from retrieval.selectors import (
    chunks_search,
    document_get_visible,
    documents_visible_to,
    visible_document_ids,
)

DEMO_USERNAMES = ("alice", "bob", "carol", "admin")
QUERIES = (
    "What is the Q3 2026 revenue forecast?",
    "salary bands for senior engineers",
    "acquisition target Project Kestrel",
    "How do I promote a PostgreSQL replica?",
    "travel per diem",
    "vendor payment approval",
)


def _doc(
    title: str,
    tier: Tier,
    *,
    users: tuple[User, ...] = (),
    groups: tuple[str, ...] = (),
    everyone: bool = False,
    status: str = Document.Status.READY,
) -> Document:
    document = Document.objects.create(
        title=title, classification=tier, all_authenticated=everyone, status=status
    )
    document.allowed_users.set(users)
    document.allowed_groups.set(Group.objects.filter(name__in=groups))
    return document


@pytest.fixture
def acl_docs(demo, user_named) -> dict[str, Document]:
    bob = user_named("bob")
    return {
        "public_everyone": _doc("public everyone", Tier.PUBLIC, everyone=True),
        "internal_no_grant": _doc("internal no grant", Tier.INTERNAL),
        "internal_bob": _doc("internal bob", Tier.INTERNAL, users=(bob,)),
        "internal_engineering": _doc(
            "internal engineering", Tier.INTERNAL, groups=("engineering",)
        ),
        "internal_everyone": _doc("internal everyone", Tier.INTERNAL, everyone=True),
        "confidential_bob": _doc("confidential bob", Tier.CONFIDENTIAL, users=(bob,)),
        "confidential_everyone": _doc("confidential everyone", Tier.CONFIDENTIAL, everyone=True),
        "confidential_finance": _doc(
            "confidential finance", Tier.CONFIDENTIAL, groups=("finance",)
        ),
        "pending_everyone": _doc(
            "pending", Tier.PUBLIC, everyone=True, status=Document.Status.PENDING
        ),
        "failed_everyone": _doc(
            "failed", Tier.PUBLIC, everyone=True, status=Document.Status.FAILED
        ),
    }


def _visible(principal, docs: dict[str, Document]) -> set[str]:
    by_pk = {d.pk: name for name, d in docs.items()}
    pks = documents_visible_to(principal).filter(pk__in=by_pk).values_list("pk", flat=True)
    return {by_pk[pk] for pk in pks}


@pytest.mark.parametrize(
    ("username", "expected"),
    [
        (
            "bob",  # engineering, internal
            {"public_everyone", "internal_bob", "internal_engineering", "internal_everyone"},
        ),
        (
            "alice",  # finance, confidential
            {
                "public_everyone",
                "internal_everyone",
                "confidential_everyone",
                "confidential_finance",
            },
        ),
        (
            "admin",  # staff, restricted, no groups: staff grants nothing by itself
            {"public_everyone", "internal_everyone", "confidential_everyone"},
        ),
    ],
)
def test_documents_visible_to_applies_clearance_and_grants(
    acl_docs, principal_of, username, expected
):
    assert _visible(principal_of(username), acl_docs) == expected


def test_document_above_clearance_is_invisible_even_when_granted_to_the_user(
    acl_docs, principal_of
):
    bob = principal_of("bob")
    assert acl_docs["confidential_bob"].allowed_users.filter(username="bob").exists()
    assert "confidential_bob" not in _visible(bob, acl_docs)
    assert document_get_visible(bob, acl_docs["confidential_bob"].pk) is None
    assert document_get_visible(bob, acl_docs["internal_bob"].pk) == acl_docs["internal_bob"]


def test_document_granted_to_a_group_is_invisible_to_other_groups(acl_docs, principal_of):
    alice = principal_of("alice")  # clearance is high enough, group is wrong
    assert "internal_engineering" not in _visible(alice, acl_docs)
    assert document_get_visible(alice, acl_docs["internal_engineering"].pk) is None
    assert "confidential_finance" not in _visible(principal_of("bob"), acl_docs)


def test_pending_and_failed_documents_are_invisible_to_everyone(acl_docs, principal_of):
    for username in DEMO_USERNAMES:
        visible = _visible(principal_of(username), acl_docs)
        assert "pending_everyone" not in visible
        assert "failed_everyone" not in visible


def test_visible_document_ids_filters_the_given_ids(acl_docs, principal_of):
    ids = {d.pk for d in acl_docs.values()}
    assert visible_document_ids(principal_of("bob"), ids) == {
        acl_docs[name].pk
        for name in ("public_everyone", "internal_bob", "internal_engineering", "internal_everyone")
    }
    assert visible_document_ids(principal_of("bob"), set()) == set()


def test_a_user_with_public_clearance_and_no_groups_sees_only_public_shared_documents(
    acl_docs, principal_of
):
    User.objects.create_user(username="dave", password="x" * 16, clearance=Tier.PUBLIC)
    assert _visible(principal_of("dave"), acl_docs) == {"public_everyone"}


def _may_read(user: User, document: Document, group_ids: set[int]) -> bool:
    """An independent oracle of the ACL, computed in Python."""
    if document.status != Document.Status.READY or document.classification > user.clearance:
        return False
    if document.all_authenticated:
        return True
    if user.pk in {u.pk for u in document.allowed_users.all()}:
        return True
    return bool(group_ids & {g.pk for g in document.allowed_groups.all()})


@pytest.mark.usefixtures("demo")
def test_chunks_search_never_returns_unreadable_chunks_for_any_demo_user(principal_of):
    documents = {
        d.pk: d for d in Document.objects.prefetch_related("allowed_users", "allowed_groups")
    }
    vectors = {q: embed_query(q) for q in QUERIES}
    seen_by: dict[str, set[int]] = {}
    for username in DEMO_USERNAMES:
        user = User.objects.get(username=username)
        group_ids = set(user.groups.values_list("pk", flat=True))
        principal = principal_of(username)
        readable = {pk for pk, d in documents.items() if _may_read(user, d, group_ids)}
        seen_by[username] = set()
        for query, vector in vectors.items():
            hits = chunks_search(principal, vector, k=20)
            assert hits, (username, query)
            for hit in hits:
                assert hit.document_id in readable, (username, query, hit.title)
                assert hit.tier == documents[hit.document_id].tier
                assert hit.tier <= principal.clearance
            scores = [h.score for h in hits]
            assert scores == sorted(scores, reverse=True)
            seen_by[username] |= {h.document_id for h in hits}
    # Non-vacuous: between them the users reach the sensitive documents they are granted.
    kestrel = Document.objects.get(title="Project Kestrel: Acquisition Memo").pk
    forecast = Document.objects.get(title="Q3 2026 Revenue Forecast").pk
    assert kestrel in seen_by["carol"]
    assert forecast in seen_by["alice"]
    assert kestrel not in seen_by["alice"] | seen_by["bob"] | seen_by["admin"]
    assert forecast not in seen_by["bob"] | seen_by["admin"]


@pytest.mark.usefixtures("demo")
def test_chunks_search_respects_k(principal_of):
    vector = embed_query("travel per diem")
    assert len(chunks_search(principal_of("carol"), vector, k=1)) == 1
    assert len(chunks_search(principal_of("carol"), vector, k=3)) == 3


@pytest.mark.usefixtures("demo")
def test_chunks_search_query_count_is_constant(principal_of, django_assert_num_queries):
    vector = embed_query("What is the Q3 2026 revenue forecast?")
    principals = [principal_of(name) for name in DEMO_USERNAMES]
    counts = []
    for principal in principals:
        for k in (1, 5, 50):
            with CaptureQueriesContext(connection) as ctx:
                chunks_search(principal, vector, k=k)
            counts.append(len(ctx.captured_queries))
    assert len(set(counts)) == 1, counts
    # The bounded count that picks the plan, one SELECT of the nearest passages (ACL filter
    # and ranking in the same query), one of the chunks that hold them and one of the hits'
    # documents, plus: the savepoint pair of the row-level-security scope, and setting and
    # restoring its settings.
    with django_assert_num_queries(counts[0]) as captured:
        chunks_search(principals[0], vector, k=10)
    data = [q["sql"] for q in captured.captured_queries if "retrieval_chunk" in q["sql"]]
    assert len(data) == 2
    assert "reltuples" in data[0]  # the plan estimate: estimated_visible_chunks
    passages = [q["sql"] for q in captured.captured_queries if "retrieval_passage" in q["sql"]]
    assert len(passages) == 1
    assert counts[0] == 8


@pytest.mark.usefixtures("demo")
def test_a_short_hnsw_result_falls_back_to_the_exact_plan(principal_of, settings):
    """Force the HNSW plan for a principal whose readable chunks all lie farther from the
    query than 1,500 they may not read, and let the graph scan give up after its first
    pass: the filtered scan comes back empty, and the fallback must still return the true
    top k (without it this returns [])."""
    import random

    from retrieval.models import Chunk, Passage
    from retrieval.selectors import chunks_search

    rng = random.Random(7)
    query = [rng.gauss(0.0, 1.0) for _ in range(384)]

    def near(sign: float, text: str) -> Passage:
        vector = [sign * q + rng.gauss(0.0, 0.3) for q in query]
        return Passage.objects.create(digest=text, embedding=vector)

    hidden = _doc("restricted bulk", Tier.RESTRICTED)
    Chunk.objects.bulk_create(
        Chunk(document=hidden, position=i, text=f"hidden {i}", passage=near(1.0, f"hidden {i}"))
        for i in range(1500)
    )
    dora = User.objects.create_user("dora", password=None, clearance=int(Tier.INTERNAL))
    mine = _doc("dora's notes", Tier.INTERNAL, users=(dora,))
    Chunk.objects.bulk_create(
        Chunk(document=mine, position=i, text=f"note {i}", passage=near(-1.0, f"note {i}"))
        for i in range(12)
    )
    with connection.cursor() as cursor:
        # Undone with the test's transaction. At this size the planner would rather sort
        # than walk the graph; at production size it walks the graph (bench-retrieval).
        cursor.execute("SET hnsw.max_scan_tuples = 1")
        cursor.execute("SET enable_seqscan = off")
        cursor.execute("SET enable_bitmapscan = off")
        cursor.execute("SET enable_sort = off")
    dora_principal, k = principal_of("dora"), 10

    settings.RETRIEVAL_EXACT_THRESHOLD = 10**9  # exact plan: the truth
    truth = [h.chunk_id for h in chunks_search(dora_principal, query, k=k)]
    settings.RETRIEVAL_EXACT_THRESHOLD = 0  # HNSW plan, whatever the estimate says
    got = [h.chunk_id for h in chunks_search(dora_principal, query, k=k)]

    assert len(truth) == k
    assert got == truth


@pytest.mark.usefixtures("demo")
@pytest.mark.parametrize("ef_search", [1, 120, 5000])
def test_the_hnsw_plan_takes_any_ef_search_setting(principal_of, settings, ef_search):
    """RETRIEVAL_HNSW_EF_SEARCH is an operator's knob: a value past pgvector's limit (1000)
    is capped instead of failing every search, and a tiny one still finds k rows (the scan
    fetches at least twice the rows wanted)."""
    principal = principal_of("alice")
    query = embed_query("travel per diem")
    settings.RETRIEVAL_EXACT_THRESHOLD = 10**9
    truth = [h.chunk_id for h in chunks_search(principal, query, k=5)]
    settings.RETRIEVAL_EXACT_THRESHOLD = 0
    settings.RETRIEVAL_HNSW_EF_SEARCH = ef_search
    got = [h.chunk_id for h in chunks_search(principal, query, k=5)]
    assert len(truth) == 5
    assert got == truth
