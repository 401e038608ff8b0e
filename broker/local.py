"""The offline `local` provider: an extractive answer composed from the supplied context.

It is not a language model. It picks the context sentences that best match the question
and cites where each came from, so the whole application runs with no model service and
no network. The UI labels its answers as extractive.

When it is offered the `convert_units` tool and the question plainly asks for a
conversion ("convert 5 km to mi", "12 lb in kg"), it proposes that call, like a model
would, and answers from the tool's result in the next round: the demo shows tool use
end to end with no model service.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass

from app.identity import Tier
from broker.types import (
    Completion,
    CompletionRequest,
    ContextChunk,
    StreamEvent,
    TokenDelta,
    ToolCall,
)

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


_CONVERSION = re.compile(
    r"(-?\d+(?:\.\d+)?)\s*([a-z]+)\s+(?:to|in|into)\s+([a-z]+)\b", re.IGNORECASE
)
CONVERT_TOOL = "convert_units"


def propose_conversion(request: CompletionRequest) -> ToolCall | None:
    """The conversion this question asks for, when `convert_units` is offered and both
    units are among those its schema accepts."""
    if not request.allow_tool_calls or request.tool_rounds:
        return None
    spec = next((t for t in request.tools if t.name == CONVERT_TOOL), None)
    if spec is None:
        return None
    units = set(spec.parameters.get("properties", {}).get("from_unit", {}).get("enum", []))
    for match in _CONVERSION.finditer(request.user_message):
        value, source, target = match.group(1), match.group(2).lower(), match.group(3).lower()
        if source in units and target in units:
            arguments = json.dumps(
                {"value": float(value) if "." in value else int(value),
                 "from_unit": source, "to_unit": target}
            )  # fmt: skip
            return ToolCall("local_call_1", CONVERT_TOOL, arguments, wire_arguments=arguments)
    return None


def _data_lines(content: str) -> list[str]:
    """The result lines of a spotlighted tool outcome (between its delimiter lines)."""
    lines = content.splitlines()
    opened = [i for i, line in enumerate(lines) if line.startswith("<<") and "/" not in line[:3]]
    closed = [i for i, line in enumerate(lines) if line.startswith("<</")]
    if not opened or not closed:
        return []
    return [line for line in lines[opened[0] + 1 : closed[-1]] if line.strip()]


def answer_from_tools(request: CompletionRequest) -> str:
    results: list[str] = []
    for round_ in request.tool_rounds:
        for call, outcome in zip(round_.calls, round_.outcomes, strict=False):
            if call.name != CONVERT_TOOL:
                continue
            if outcome.is_error:
                results.append("The unit conversion could not be run.")
            else:
                results.extend(_data_lines(outcome.content))
    if not results:
        return ""
    return "Computed with the convert_units tool: " + " ".join(results)


class LocalProvider:
    """Extractive, offline, deterministic. Streams its answer word by word."""

    kind = "local"

    def __init__(self, *, name: str = "local", max_tier: Tier = Tier.RESTRICTED) -> None:
        self.name = name
        self.model = "extractive-v1"
        self.max_tier = max_tier

    def stream(self, request: CompletionRequest) -> Iterator[StreamEvent]:
        proposal = propose_conversion(request)
        if proposal is not None:
            yield Completion(
                text="",
                cited_markers=(),
                provider=self.name,
                model=self.model,
                input_tokens=len(request.user_message.split()),
                labels=("extractive",),
                tool_calls=(proposal,),
            )
            return
        text = answer_from_tools(request)
        markers: list[int] = []
        if not text:
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
