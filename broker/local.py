"""The offline `local` provider: an extractive answer composed from the supplied context.

It is not a language model. It picks the context sentences that best match the question
and cites where each came from, so the whole application runs with no model service and
no network. The UI labels its answers as extractive.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from app.identity import Tier
from broker.types import Completion, CompletionRequest, ContextChunk, StreamEvent, TokenDelta

NO_ANSWER = (
    "I found nothing in the documents you can access that answers this. "
    "Try different words, or ask an administrator whether the document you need is shared "
    "with you."
)
_MAX_SENTENCES = 3
_WORD = re.compile(r"[a-z0-9$%][a-z0-9$%.,'-]*[a-z0-9%]|[a-z0-9]", re.IGNORECASE)
_SENTENCE_SPLIT = re.compile(r"(?<=[.!?])\s+|\n+")
_MARKDOWN_NOISE = re.compile(r"^[>*\-\s\d.)]+|[*_`]+")
_TABLE_SEPARATOR = re.compile(r"^\|?\s*:?-{3,}:?\s*(\|\s*:?-{3,}:?\s*)*\|?$")
_STOPWORDS = frozenset(
    """a an and are as at be by can do does for from has have how i in is it its me my of on
    or our should tell the their there this to us was we what when where which who why will
    with you your about please any""".split()
)


def _terms(text: str) -> set[str]:
    terms = set()
    for word in _WORD.findall(text.lower()):
        word = word.strip(".,'")
        if word and word not in _STOPWORDS:
            terms.add(word[:-1] if len(word) > 3 and word.endswith("s") else word)
    return terms


def _prose_lines(text: str) -> list[str]:
    """Markdown reduced to lines worth quoting: no headings, no table header or separator
    rows; table cells joined with " · "."""
    lines = text.splitlines()
    out: list[str] = []
    for i, line in enumerate(lines):
        stripped = line.strip()
        if not stripped or stripped.startswith("#") or _TABLE_SEPARATOR.match(stripped):
            continue
        if stripped.startswith("|"):
            following = lines[i + 1].strip() if i + 1 < len(lines) else ""
            if _TABLE_SEPARATOR.match(following):
                continue  # a header row
            cells = [c.strip() for c in stripped.strip("|").split("|")]
            stripped = " · ".join(c for c in cells if c)
        out.append(stripped)
    return out


def _sentences(text: str) -> list[str]:
    out = []
    for line in _prose_lines(text):
        for raw in _SENTENCE_SPLIT.split(line):
            sentence = " ".join(_MARKDOWN_NOISE.sub("", raw).split())
            if len(sentence) >= 20:
                out.append(sentence)
    return out


@dataclass(frozen=True, slots=True)
class _Pick:
    score: float
    chunk: ContextChunk
    sentence: str


def compose_answer(question: str, context: tuple[ContextChunk, ...]) -> tuple[str, list[int]]:
    """Return the extractive answer text and the citation markers it used."""
    wanted = _terms(question)
    picks: list[_Pick] = []
    for rank, chunk in enumerate(context):
        for sentence in _sentences(chunk.text):
            overlap = len(wanted & _terms(sentence))
            if overlap:
                # Earlier (better-ranked) chunks win ties.
                picks.append(_Pick(overlap - rank * 0.01, chunk, sentence))
    picks.sort(key=lambda p: p.score, reverse=True)
    chosen: list[_Pick] = []
    for pick in picks:
        if pick.sentence not in {c.sentence for c in chosen}:
            chosen.append(pick)
        if len(chosen) == _MAX_SENTENCES:
            break
    if not chosen:
        return NO_ANSWER, []
    lines = [f"- {p.sentence} [{p.chunk.marker}]" for p in chosen]
    markers = sorted({p.chunk.marker for p in chosen})
    return "From the documents you can access:\n\n" + "\n".join(lines), markers


class LocalProvider:
    """Extractive, offline, deterministic. Streams its answer word by word."""

    kind = "local"

    def __init__(self, *, name: str = "local", max_tier: Tier = Tier.RESTRICTED) -> None:
        self.name = name
        self.model = "extractive-v1"
        self.max_tier = max_tier

    def stream(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        text, markers = compose_answer(request.user_message, request.context)
        for piece in re.findall(r"\S+\s*|\s+", text):
            yield TokenDelta(piece)
        yield Completion(
            text=text,
            cited_markers=tuple(markers),
            provider=self.name,
            model=self.model,
            input_tokens=len(request.user_message.split())
            + sum(len(c.text.split()) for c in request.context),
            output_tokens=len(text.split()),
            labels=("extractive",),
        )
