"""Ingestion scans each document for PII, records the kinds and the tier they suggest, and
flags a document whose chosen tier is below that; it never changes the chosen tier."""

from __future__ import annotations

import pytest

from app.identity import Tier
from audit.models import AuditEvent, EventType
from orchestration.pii import suggest_tier
from retrieval.models import Document
from retrieval.services import document_create, document_index

CONTACT = (
    "Escalations go to Dana Whitfield at dana.whitfield@example.com or +1 415 555 0134.\n\n"
    "The rest of this page explains the on-call rota and how to hand over a shift."
)
CLEAN = "The on-call rota changes every Monday. Hand over open incidents in the channel."


def _ingest(text: str, tier: Tier) -> Document:
    document = document_create(
        title="On-call notes",
        classification=tier,
        source_name="notes.txt",
        data=text.encode(),
        all_authenticated=True,
    )
    document_index(document_id=document.pk)
    document.refresh_from_db()
    return document


def _flags(document: Document) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(
            event_type=EventType.DOCUMENT_FLAGGED, subject=f"document:{document.pk}"
        )
    )


@pytest.mark.django_db
def test_pii_in_an_internal_document_suggests_confidential_and_flags_it():
    document = _ingest(CONTACT, Tier.INTERNAL)
    assert document.pii_kinds.get("EMAIL_ADDRESS") == 1
    assert "PHONE_NUMBER" in document.pii_kinds
    assert document.suggested_classification == int(Tier.CONFIDENTIAL)
    assert document.classification == int(Tier.INTERNAL)  # the admin's choice stands
    assert document.tier_below_suggestion
    (flag,) = _flags(document)
    assert flag.decision == "flagged"
    assert flag.metadata["reason"] == "tier_below_pii_suggestion"
    assert flag.metadata["suggested"] == "confidential"
    # Kinds only: no value found in the text reaches the audit trail.
    assert "dana" not in str(flag.metadata).lower()


@pytest.mark.django_db
def test_a_higher_chosen_tier_is_kept_and_not_flagged():
    document = _ingest(CONTACT, Tier.RESTRICTED)
    assert document.suggested_classification == int(Tier.CONFIDENTIAL)
    assert document.classification == int(Tier.RESTRICTED)  # never lowered
    assert not document.tier_below_suggestion
    assert _flags(document) == []


@pytest.mark.django_db
def test_a_document_without_pii_has_no_suggestion():
    document = _ingest(CLEAN, Tier.PUBLIC)
    assert document.pii_kinds == {}
    assert document.suggested_classification is None
    assert _flags(document) == []


def test_financial_identifiers_suggest_restricted():
    assert suggest_tier({"CREDIT_CARD": 1, "PERSON": 2}) == Tier.RESTRICTED
    assert suggest_tier({"PERSON": 1}) == Tier.CONFIDENTIAL
    assert suggest_tier({}) is None
