"""Output moderation: the rules backend, the moderations endpoint (the real openai SDK
against the loopback server), failure handling, and the step inside the streamed turn."""

from __future__ import annotations

from typing import Any

import pytest

from app.identity import Tier
from audit.models import AuditEvent
from broker.loopback import LoopbackServer, refused_url
from broker.types import TokenDelta
from orchestration import moderation
from orchestration.errors import Blocked
from orchestration.pipeline import Answer, Turn, answer_stream
from tests.broker.conftest import provider_entry

HARMFUL = {
    "self_harm_instructions": "The easiest way to kill yourself is described below.",
    "violent_threats": "I am going to kill you and I know where you live.",
    "hate_slurs": "All immigrants are vermin and should be exterminated.",
    "sexual_minors": "Here is an erotic story about a 12-year-old girl.",
    "weapons_explosives_synthesis": "Here is how to make a pipe bomb at home: pack a pipe "
    "with powder and nails.",
}
BENIGN = [
    "Our security policy bans weapons and explosives on company premises.",
    "If an employee threatens violence, report it to security at once.",
    "The employee assistance programme offers confidential help for anyone at risk of self-harm.",
    "Child safety training is mandatory for staff who work with minors.",
    "Killing a stuck process: run kill -9 with the process id.",
    "The Q3 forecast is $48.2 million, driven by the Halvorsen Logistics contract.",
    "The bomb disposal scene in the training video is fictional.",
]


@pytest.mark.parametrize(("category", "text"), sorted(HARMFUL.items()))
def test_rules_flag_each_category(category, text):
    assert category in moderation.rules_categories(text)


@pytest.mark.parametrize("text", BENIGN)
def test_rules_pass_benign_text_that_talks_about_the_topics(text):
    assert moderation.rules_categories(text) == ()


def test_the_backend_off_lets_everything_through(settings):
    settings.OUTPUT_MODERATION_BACKEND = "off"
    assert not moderation.moderate(HARMFUL["violent_threats"], tier=Tier.PUBLIC).blocked


def test_an_unknown_backend_is_a_configuration_error(settings):
    settings.OUTPUT_MODERATION_BACKEND = "maybe"
    with pytest.raises(ValueError, match="OUTPUT_MODERATION_BACKEND"):
        moderation.ModerationGate.from_settings()


# --- the moderations endpoint through the openai SDK ---------------------------------------


@pytest.fixture
def endpoint(settings, loopback: LoopbackServer) -> LoopbackServer:
    settings.OUTPUT_MODERATION_BACKEND = "openai_moderation"
    settings.OUTPUT_MODERATION_URL = loopback.openai_base_url
    settings.OUTPUT_MODERATION_MODEL = "omni-moderation-latest"
    settings.OUTPUT_MODERATION_TIMEOUT_S = 2
    moderation._client.cache_clear()
    return loopback


def test_the_endpoint_flags_what_the_rules_miss(endpoint):
    text = "A perfectly ordinary-looking sentence."
    assert not moderation.moderate(text, tier=Tier.INTERNAL).blocked
    endpoint.flag_moderation(frozenset({"violence", "illicit/violent"}))
    verdict = moderation.moderate(text, tier=Tier.INTERNAL)
    assert verdict.blocked
    assert verdict.categories == ("illicit/violent", "violence")
    assert verdict.backend == "openai_moderation"
    seen = [r for r in endpoint.recorded if r.path == "/v1/moderations"]
    assert len(seen) == 2
    assert seen[0].body == {"input": text, "model": "omni-moderation-latest"}


def test_answers_above_the_endpoint_tier_are_never_sent_to_it(endpoint, settings):
    settings.OUTPUT_MODERATION_MAX_TIER = "internal"
    endpoint.flag_moderation(frozenset({"violence"}))
    assert not moderation.moderate("Confidential figures.", tier=Tier.CONFIDENTIAL).blocked
    assert endpoint.recorded == []
    # ... but the rules still judge them.
    assert moderation.moderate(HARMFUL["violent_threats"], tier=Tier.RESTRICTED).blocked


def test_an_endpoint_outage_falls_back_to_the_rules_and_fails_open_by_default(endpoint, settings):
    settings.OUTPUT_MODERATION_URL = refused_url()
    moderation._client.cache_clear()
    verdict = moderation.moderate("An ordinary answer.", tier=Tier.INTERNAL)
    assert (verdict.blocked, verdict.degraded) == (False, True)
    assert moderation.moderate(HARMFUL["hate_slurs"], tier=Tier.INTERNAL).blocked


def test_an_endpoint_outage_fails_closed_for_the_listed_tiers(endpoint, settings):
    settings.OUTPUT_MODERATION_URL = refused_url()
    settings.OUTPUT_MODERATION_FAIL_CLOSED_TIERS = ["internal"]
    moderation._client.cache_clear()
    internal = moderation.moderate("An ordinary answer.", tier=Tier.INTERNAL)
    assert (internal.blocked, internal.fail_closed) == (True, True)
    public = moderation.moderate("An ordinary answer.", tier=Tier.PUBLIC)
    assert not public.blocked


# --- the step in the streamed turn ----------------------------------------------------------


def _turn(principal: Any) -> Turn:
    return Turn(
        principal=principal,
        message="Tell me about it.",
        system_prompt="secret canary-0011223344556677",
        canary="canary-0011223344556677",
        spotlight="data-0011223344556677",
        template="answer@v2",
    )


def _use_reply(loopback: LoopbackServer, use_providers: Any, reply: str) -> None:
    use_providers([provider_entry(loopback, "p", "openai", max_tier="restricted")])
    loopback.state.reply = reply


def _consume(turn: Turn, released: list[str] | None = None) -> tuple[list[str], Answer | None]:
    released = [] if released is None else released
    answer = None
    for event in answer_stream(turn):
        if isinstance(event, TokenDelta):
            released.append(event.text)
        elif isinstance(event, Answer):
            answer = event
    return released, answer


pytestmark = pytest.mark.django_db


def test_a_harmful_streamed_answer_is_withheld_audited_and_cut_at_its_sentence(
    loopback, use_providers, principal_of
):
    _use_reply(
        loopback,
        use_providers,
        "Sure. Here is how to make a pipe bomb at home. First you buy a steel pipe and "
        "end caps from the hardware store then you continue with the rest of the steps.",
    )
    released: list[str] = []
    with pytest.raises(Blocked) as blocked:
        _consume(_turn(principal_of("bob")), released)
    assert blocked.value.reason_code == "output_moderation"
    # The stream stopped at the sentence that tripped the rule: nothing after it went out.
    assert "steel pipe" not in "".join(released)
    # What the one audit event will record (written where the refusal is handled).
    assert blocked.value.event_type == "output.blocked"
    assert blocked.value.metadata["categories"] == ["weapons_explosives_synthesis"]
    assert "pipe bomb" not in str(blocked.value.metadata)


def test_a_moderated_answer_raises_the_users_anomaly_score(
    loopback, use_providers, principal_of, settings
):
    from orchestration.anomaly import rolling_score

    principal = principal_of("bob")
    before = rolling_score(principal.user_id)
    _use_reply(loopback, use_providers, "Sure. Here is how to make a pipe bomb at home.")
    with pytest.raises(Blocked):
        _consume(_turn(principal))
    weight = settings.ANOMALY_WEIGHTS["moderation_blocked"]
    assert rolling_score(principal.user_id) == pytest.approx(before + weight)


def test_without_the_moderation_step_the_same_answer_goes_out(
    loopback, use_providers, principal_of, settings
):
    """The control removed (backend off): the harmful answer is released, so the test
    above proves the step, not something else."""
    settings.OUTPUT_MODERATION_BACKEND = "off"
    _use_reply(loopback, use_providers, "Sure. Here is how to make a pipe bomb at home.")
    released, answer = _consume(_turn(principal_of("bob")))
    assert answer is not None
    assert "pipe bomb" in answer.text


def test_the_endpoint_verdict_withholds_the_answer_at_the_end_of_the_stream(
    loopback, use_providers, principal_of, endpoint
):
    reply = "The quarterly numbers look fine and nothing here trips a word list."
    _use_reply(loopback, use_providers, reply)
    endpoint.flag_moderation(frozenset({"harassment"}), when_contains="quarterly numbers")
    with pytest.raises(Blocked) as blocked:
        _consume(_turn(principal_of("bob")))
    assert blocked.value.reason_code == "output_moderation"
    (checked,) = [r for r in loopback.recorded if r.path == "/v1/moderations"]
    assert checked.body["input"] == reply
    assert blocked.value.metadata == {
        "backend": "openai_moderation",
        "categories": ["harassment"],
        "degraded": False,
    }


def test_a_degraded_check_is_audited_and_the_answer_released(
    loopback, use_providers, principal_of, endpoint, settings
):
    settings.OUTPUT_MODERATION_URL = refused_url()
    moderation._client.cache_clear()
    _use_reply(loopback, use_providers, "An ordinary answer about travel.")
    _, answer = _consume(_turn(principal_of("bob")))
    assert answer is not None
    assert AuditEvent.objects.filter(
        event_type="chat.flagged", reason="moderation_unavailable", decision="degraded"
    ).exists()


def test_the_chat_api_returns_a_blocked_reply_for_a_moderated_answer(
    loopback, use_providers, client, bearer
):
    _use_reply(loopback, use_providers, "I am going to kill you, I know where you live.")
    response = client.post(
        "/api/v1/chat",
        {"message": "What is the travel per diem?"},
        content_type="application/json",
        **bearer("bob"),
    )
    body = response.json()
    assert body["blocked"] is True
    assert body["reason"] == "output_moderation"
    assert "kill" not in body["answer"]
    # One audit event for the refusal, with the categories and never the text.
    (event,) = AuditEvent.objects.filter(reason="output_moderation")
    assert (event.event_type, event.subject) == ("output.blocked", "guard:moderation")
    assert event.metadata["categories"] == ["violent_threats"]
    assert "kill" not in str(event.metadata)
