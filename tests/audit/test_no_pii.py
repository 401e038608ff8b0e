"""The audit trail records metadata about a turn, never its text: a PII-laden chat turn,
a refused one and a search leave no prompt, answer or PII in any audit event."""

from __future__ import annotations

import json
from dataclasses import replace
from urllib.parse import urlencode

import pytest

from app.services import chat_refusal_record, prompt_hmac
from audit.models import AuditEvent

PII_MESSAGE = (
    "My name is Jane Roe, e-mail jane.roe@example.com, card 4111 1111 1111 1111,"
    " phone 555-0199: what is the per diem?"
)
# The card as typed and with its spaces removed. Not a bare "4111": random request and
# token ids are hex, and one of them contained "4111" (a failed CI run).
FRAGMENTS = (
    "Jane", "Roe", "jane.roe", "example.com", "4111 1111", "4111111111111111", "555-0199",
    "per diem",
)  # fmt: skip


def _events_of(request_id: str) -> str:
    rows = AuditEvent.objects.filter(request_id=request_id).values(
        "request_id", "token_id", "event_type", "subject", "decision", "reason", "metadata"
    )
    assert rows, f"nothing audited for request {request_id}"
    return json.dumps(list(rows), default=str)


@pytest.mark.usefixtures("demo")
def test_pii_laden_chat_turn_leaves_no_pii_or_text_in_the_audit_trail(client, bearer):
    response = client.post(
        "/api/v1/chat", data=json.dumps({"message": PII_MESSAGE}),
        content_type="application/json", **bearer("alice"),
    )  # fmt: skip
    assert response.status_code == 200
    audited = _events_of(response["X-Request-ID"])
    for fragment in (*FRAGMENTS, response.json()["answer"][:30]):
        assert fragment not in audited
    # What it does hold: a keyed digest that matches the prompt only for the key holder.
    assert prompt_hmac(PII_MESSAGE) in audited


@pytest.mark.django_db
def test_a_refused_pii_laden_turn_leaves_no_pii_in_the_audit_trail(principal_of):
    # Every control that stops a turn records it through chat_refusal_record.
    principal = replace(principal_of("alice"), request_id="refused-pii-turn")
    chat_refusal_record(principal=principal, reason="prompt_injection", message=PII_MESSAGE)
    audited = _events_of("refused-pii-turn")
    assert "prompt_injection" in audited
    for fragment in FRAGMENTS:
        assert fragment not in audited


@pytest.mark.usefixtures("demo")
def test_pii_laden_search_leaves_no_query_text_in_the_audit_trail(client, bearer):
    query = urlencode({"q": PII_MESSAGE})
    response = client.get(f"/api/v1/search?{query}", **bearer("alice"))
    assert response.status_code == 200
    audited = _events_of(response["X-Request-ID"])
    for fragment in FRAGMENTS:
        assert fragment not in audited
