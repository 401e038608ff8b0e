"""The live review describes the test deployment from its real settings and database,
and each observed control changes the review when it is removed."""

from __future__ import annotations

from io import StringIO

import pytest
from django.conf import settings as django_settings
from django.core.management import call_command

from audit.models import AuditEvent, EventType
from audit.services import audit_record
from broker import services as broker
from design_review.live import describe_live
from design_review.model import ArchitectureInvalid, architecture_from_dict
from design_review.models import LiveReview
from design_review.review import review_architecture
from orchestration import pipeline
from orchestration.errors import Blocked

pytestmark = pytest.mark.django_db


def _live():
    description = describe_live()
    arch = architecture_from_dict(description)  # the same schema validates it
    return arch, review_architecture(arch)


def _fires(report, rule_id: str, target: str | None = None) -> bool:
    return any(f.rule.id == rule_id and target in (None, f.target) for f in report.open_findings)


def test_live_description_of_the_test_deployment_reads_real_state():
    arch, report = _live()
    store = arch.elements["vector-store"]
    # Migration 0003 forces RLS on both tables and the app role is subject to it.
    assert "row_level_security" in store.controls
    assert "forced=True" in store.attrs["evidence"]["row_level_security"]
    assert "bypassrls=False" in store.attrs["evidence"]["row_level_security"]
    # The demo corpus holds every tier, read from the documents table.
    assert store.attrs["tiers"] == ["public", "internal", "confidential", "restricted"]
    # One element per configured provider, with its ceiling.
    providers = [
        e for e in arch.elements.values() if e.kind == "model_provider" and e.id != "embeddings"
    ]
    assert len(providers) == len(broker.configured_providers())
    assert {p.get("max_tier") for p in providers} == {
        p.max_tier.label for p in broker.configured_providers()
    }
    # The test settings module hard-codes its secret key: the review says so.
    assert arch.elements["broker"].get("secrets") == "config"
    assert _fires(report, "DR-SC-01", "broker")
    assert not _fires(report, "DR-RT-02", "vector-store")
    assert [a.id for a in report.answers] == ["q1", "q2", "q3", "q4", "q5"]


def _commit(conn, sql: str, params: list[object] | None = None) -> None:
    with conn.cursor() as cursor:
        cursor.execute(sql, params or [])
    conn.commit()


@pytest.mark.django_db(transaction=True)
def test_live_review_reads_forced_rls_and_who_owns_the_table(owner_db, demo):
    # Only the owner may change the table (the app role owns nothing); restored after.
    _commit(owner_db, "ALTER TABLE retrieval_chunk NO FORCE ROW LEVEL SECURITY")
    try:
        arch, _ = _live()
    finally:
        _commit(owner_db, "ALTER TABLE retrieval_chunk FORCE ROW LEVEL SECURITY")
    evidence = arch.elements["vector-store"].attrs["evidence"]["row_level_security"]
    assert "retrieval_chunk: enabled=True forced=False" in evidence
    # FORCE only matters to the table's owner; the app role is not it, so the policy
    # still binds the application and the control stands.
    assert "row_level_security" in arch.elements["vector-store"].controls


@pytest.mark.django_db(transaction=True)
def test_live_review_finds_rls_disabled(owner_db, demo):
    _commit(owner_db, "ALTER TABLE retrieval_document DISABLE ROW LEVEL SECURITY")
    try:
        arch, report = _live()
    finally:
        _commit(owner_db, "ALTER TABLE retrieval_document ENABLE ROW LEVEL SECURITY")
    assert "row_level_security" not in arch.elements["vector-store"].controls
    assert _fires(report, "DR-RT-02", "vector-store")


@pytest.mark.django_db(transaction=True)
def test_live_review_finds_a_broken_audit_chain(superuser_db):
    _, before = _live()
    assert not _fires(before, "DR-LG-02")
    events = [
        audit_record(
            event_type=EventType.TOKEN_ISSUED, actor_id=None, subject=f"s{i}", decision="issued"
        )
        for i in range(3)
    ]
    # What a superuser can do: switch triggers off for its own session and change a row.
    _commit(superuser_db, "SET session_replication_role = replica")
    _commit(
        superuser_db,
        "UPDATE audit_auditevent SET decision = 'denied' WHERE id = %s",
        [events[1].pk],
    )
    arch, report = _live()
    assert "tamper_evidence" not in arch.elements["audit-log"].controls
    assert "1 break(s)" in arch.elements["audit-log"].attrs["evidence"]["tamper_evidence"]
    assert _fires(report, "DR-LG-02", "audit-log")


def test_live_probes_detect_a_working_injection_guard(monkeypatch):
    def blocking_guard(turn):
        if "ignore all previous instructions" in turn.message.lower():
            raise Blocked("prompt_injection", "blocked")
        return turn

    monkeypatch.setattr(pipeline, "guard_input", blocking_guard)
    arch, report = _live()
    assert "injection_detection" in arch.elements["orchestrator"].controls
    assert not _fires(report, "DR-OR-02")
    # And a pass-through guard is reported as missing, whatever the real one does.
    monkeypatch.setattr(pipeline, "guard_input", lambda turn: turn)
    arch, report = _live()
    assert "injection_detection" not in arch.elements["orchestrator"].controls
    assert _fires(report, "DR-OR-02", "orchestrator")


def test_live_probes_detect_input_validation_removed(monkeypatch):
    arch, _ = _live()
    assert "input_validation" in arch.elements["orchestrator"].controls
    monkeypatch.setattr(pipeline, "validate_input", lambda turn: turn)
    arch, report = _live()
    assert "input_validation" not in arch.elements["orchestrator"].controls
    assert _fires(report, "DR-OR-01", "orchestrator")


def test_live_probes_write_nothing():
    before = AuditEvent.objects.count()
    _live()
    assert AuditEvent.objects.count() == before


def test_live_review_sees_mfa_only_when_enforced(settings):
    arch, report = _live()
    enforced = "mfa" in arch.elements["gateway"].controls
    assert _fires(report, "DR-ID-01", "gateway") is not enforced
    settings.MIDDLEWARE = [m for m in settings.MIDDLEWARE if "mfa" not in m.lower()]
    # Names from Django's settings (the fixture's wrapper does not list them).
    flags = [n for n in dir(django_settings) if "MFA" in n and ("REQUIRE" in n or "ENFORCE" in n)]
    for name in flags:
        setattr(settings, name, False)
    arch, report = _live()
    assert "mfa" not in arch.elements["gateway"].controls
    assert _fires(report, "DR-ID-01", "gateway")


def test_live_review_sees_a_vault_backend(monkeypatch):
    monkeypatch.setenv("VAULT_ADDR", "https://vault.internal:8200")
    arch, report = _live()
    assert arch.elements["vault"].kind == "vault"
    assert arch.elements["broker"].get("secrets") == "vault"
    assert not _fires(report, "DR-SC-01")


def test_declared_controls_and_practices_are_marked_as_declared(settings):
    settings.DESIGN_REVIEW_DECLARED_CONTROLS = ["gateway:waf", "gateway:bot_detection"]
    settings.DESIGN_REVIEW_PRACTICES = ["incident_playbooks", "nonsense"]
    arch, report = _live()
    gateway = arch.elements["gateway"]
    assert {"waf", "bot_detection"} <= gateway.controls
    assert gateway.attrs["evidence"]["waf"] == "declared by DESIGN_REVIEW_DECLARED_CONTROLS"
    assert arch.practices == {"incident_playbooks"}
    assert not _fires(report, "DR-GW-03")
    assert not _fires(report, "DR-OP-02")


def test_live_command_stores_the_review_for_the_staff_page():
    out = StringIO()
    with pytest.raises(SystemExit):
        call_command("design_review", "--live", "--fail-on", "low", stdout=out, stderr=StringIO())
    stored = LiveReview.objects.get()
    assert stored.report["review"]["highest_severity"] == stored.highest_severity
    assert stored.report["description"]["name"] == "live deployment (test)"
    assert "# Design review: live deployment (test)" in out.getvalue()
    call_command("design_review", "--live", "--no-store", "--fail-on", "never", stdout=StringIO())
    assert LiveReview.objects.count() == 1


def test_live_accepted_risks_come_from_settings_and_are_validated(settings):
    settings.DESIGN_REVIEW_LIVE_ACCEPTED_RISKS = [
        {
            "rule": "DR-SC-01",
            "justification": "the test settings module is never deployed anywhere",
            "owner": "test-suite",
            "expires": "2099-01-01",
        }
    ]
    _, report = _live()
    assert not _fires(report, "DR-SC-01")
    assert any(f.rule.id == "DR-SC-01" and f.accepted for f in report.findings)
    settings.DESIGN_REVIEW_LIVE_ACCEPTED_RISKS = [{"rule": "DR-SC-01"}]
    with pytest.raises(ArchitectureInvalid, match=r"accepted_risks\[0\]: 'justification'"):
        _live()


def test_provider_names_become_valid_element_ids():
    from design_review.live import _element_id

    assert _element_id("provider-Azure OpenAI / EU:west") == "provider-azure-openai-eu-west"
    assert _element_id("provider-" + "x" * 100) == ("provider-" + "x" * 100)[:64]


def test_live_review_sees_conversation_encryption_and_its_absence(settings):
    """The app database carries encryption_at_rest only while the configured KEK really
    wraps and unwraps a data key; without a usable KEK the review says so (DR-RT-07)."""
    arch, report = _live()
    assert "encryption_at_rest" in arch.elements["app-db"].controls
    assert not _fires(report, "DR-RT-07", "app-db")

    settings.CONVERSATION_KEK_ALLOW_DERIVED = False
    settings.CONVERSATION_KEK_LOCAL_REF = ""
    arch, report = _live()
    assert "encryption_at_rest" not in arch.elements["app-db"].controls
    assert "probe failed" in arch.elements["app-db"].attrs["evidence"]["encryption_at_rest"]
    assert _fires(report, "DR-RT-07", "app-db")
