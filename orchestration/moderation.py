"""Output moderation: the unsafe-output guardrail, after output validation.

Backends (`OUTPUT_MODERATION_BACKEND`):

- `rules` (default): word lists and regular expressions per category, from the data file
  `orchestration/data/moderation_rules.yaml` (self-harm instructions, violent threats,
  hate slurs, sexual content involving minors, weapons/explosives synthesis). In process,
  microseconds, no network.
- `openai_moderation`: the OpenAI moderations API (`POST /v1/moderations`) through the
  `openai` SDK, at `OUTPUT_MODERATION_URL` (OpenAI itself, or any server speaking that
  wire format). The rules run too: they are the floor.
- `off`: no moderation.

Streaming: the rules check the answer at every sentence boundary as it streams, the
endpoint checks the whole answer once at the end. A block mid-stream stops the stream at
once and the client is told to retract what it showed (the `blocked` event replaces the
streamed text; nothing is stored). So at most the sentence that tripped a rule has been
on screen, and only until the retraction; the non-streaming API never shows it.

Data leaving: the endpoint is an external service, so answers above
`OUTPUT_MODERATION_MAX_TIER` are never sent to it (the rules alone judge them).

Endpoint down: the rules still run (so the check never disappears); then the turn fails
closed for tiers in `OUTPUT_MODERATION_FAIL_CLOSED_TIERS`, open (audited as degraded)
otherwise. The default is open for every tier: the harm this guard catches does not
depend on the data tier, the data-tier controls (routing, redaction, canary) do not
depend on it, and failing closed would make a third-party endpoint a dependency of every
chat turn. Operators who want it stricter list the tiers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import openai
import yaml
from django.conf import settings

from app.identity import Tier
from app.logs import get_logger

RULES_FILE = Path(__file__).parent / "data" / "moderation_rules.yaml"
BACKENDS = frozenset({"rules", "openai_moderation", "off"})
_SENTENCE_END = re.compile(r"[.!?](?:\s|$)|\n")

log = get_logger("orchestration.moderation")


@dataclass(frozen=True, slots=True)
class ModerationVerdict:
    blocked: bool
    categories: tuple[str, ...] = ()
    backend: str = "rules"
    degraded: bool = False  # the endpoint failed; the rules decided
    fail_closed: bool = False  # blocked because the endpoint failed and the tier says so


ALLOW = ModerationVerdict(False)


@lru_cache(maxsize=4)
def _rules(path: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    data = yaml.safe_load(Path(path).read_text())
    compiled = []
    for category, rule in data["categories"].items():
        parts = [r"\b" + re.escape(w) + r"\b" for w in rule.get("words", [])]
        parts += [f"(?:{p})" for p in rule.get("patterns", [])]
        compiled.append((category, re.compile("|".join(parts), re.IGNORECASE | re.DOTALL)))
    return tuple(compiled)


def rules_categories(text: str) -> tuple[str, ...]:
    """The rule categories this text matches (empty: none)."""
    return tuple(
        category
        for category, pattern in _rules(str(settings.OUTPUT_MODERATION_RULES_FILE))
        if pattern.search(text)
    )


@lru_cache(maxsize=4)
def _client(url: str, key_ref: str, timeout_s: float) -> openai.OpenAI:
    from app.secrets import resolve_secret

    return openai.OpenAI(
        api_key=resolve_secret(key_ref) if key_ref else "none",
        base_url=url or None,
        max_retries=0,
        timeout=timeout_s,
    )


def endpoint_categories(text: str) -> tuple[str, ...]:
    """Categories the moderation endpoint flags; raises on any failure of the call."""
    client = _client(
        settings.OUTPUT_MODERATION_URL,
        settings.OUTPUT_MODERATION_KEY_REF,
        float(settings.OUTPUT_MODERATION_TIMEOUT_S),
    )
    response = client.moderations.create(model=settings.OUTPUT_MODERATION_MODEL, input=text)
    flagged: set[str] = set()
    for result in response.results:
        if not result.flagged:
            continue
        categories = result.categories.model_dump(by_alias=True)
        flagged.update(name for name, hit in categories.items() if hit)
        if not flagged:
            flagged.add("flagged")
    return tuple(sorted(flagged))


def moderate(text: str, *, tier: Tier) -> ModerationVerdict:
    """The verdict on a complete answer, with the configured backend."""
    backend = settings.OUTPUT_MODERATION_BACKEND
    if backend == "off" or not text.strip():
        return ALLOW
    hits = rules_categories(text)
    if hits:
        return ModerationVerdict(True, hits, "rules")
    if backend != "openai_moderation" or tier > Tier.parse(settings.OUTPUT_MODERATION_MAX_TIER):
        return ALLOW
    try:
        flagged = endpoint_categories(text)
    except Exception as exc:  # any failure of the external check: rules have decided
        log.warning("moderation_endpoint_failed", error=type(exc).__name__)
        closed = tier in {Tier.parse(t) for t in settings.OUTPUT_MODERATION_FAIL_CLOSED_TIERS}
        return ModerationVerdict(closed, (), backend, degraded=True, fail_closed=closed)
    return ModerationVerdict(bool(flagged), flagged, backend)


@dataclass
class ModerationGate:
    """Per streamed answer: `feed` the released text; at each completed sentence the rules
    check everything so far. Returns a blocking verdict as soon as one matches."""

    enabled: bool
    _text: str = ""
    _checked_to: int = 0
    hits: tuple[str, ...] = field(default=())

    @classmethod
    def from_settings(cls) -> ModerationGate:
        backend = settings.OUTPUT_MODERATION_BACKEND
        if backend not in BACKENDS:
            raise ValueError(f"OUTPUT_MODERATION_BACKEND must be one of {sorted(BACKENDS)}")
        return cls(enabled=backend != "off")

    def feed(self, released: str) -> ModerationVerdict:
        if not self.enabled or not released:
            return ALLOW
        self._text += released
        ends = [m.end() for m in _SENTENCE_END.finditer(self._text, self._checked_to)]
        if not ends:
            return ALLOW
        self._checked_to = ends[-1]
        hits = rules_categories(self._text[: self._checked_to])
        return ModerationVerdict(True, hits, "rules") if hits else ALLOW
