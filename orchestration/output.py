"""Output validation, applied to the answer as it streams.

The model's output is untrusted. Plain words (lower-case letters, or a common word
starting a sentence) stream at once: they cannot carry any of the things below. A
lower-case first name (one that is not also an ordinary word) is not plain: it may begin
a lower-case person's name. From the
first word that could (a capitalised word, digits, symbols, brackets, URLs), text is held
until the end of its sentence or line and released only after that segment is checked:

- the turn's canary token anywhere in the output ⇒ the answer is blocked (the system
  prompt leaked);
- secrets (API keys, private keys, bearer/JWT tokens, passwords in assignments) ⇒ redacted;
- PII (Presidio) whose value is in neither the permitted context nor the user's input ⇒
  redacted;
- citation markers that name no passage shown to this principal ⇒ removed;
- markdown images to hosts outside OUTPUT_LINK_ALLOWED_HOSTS ⇒ removed, and links to such
  hosts unless the URL appears verbatim in the permitted context (exfiltration through
  URLs: a URL the model composed can carry data out); link text stays.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from django.conf import settings

from orchestration.names import may_start_lower_case_name
from orchestration.pii import find_pii

SECRET_PATTERNS: tuple[tuple[str, re.Pattern[str]], ...] = tuple(
    (name, re.compile(pattern, flags))
    for name, pattern, flags in (
        (
            "private_key",
            r"-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY-----.*?"
            r"(?:-----END (?:[A-Z0-9]+ )*PRIVATE KEY-----|\Z)",
            re.DOTALL,
        ),
        ("aws_access_key", r"\b(?:AKIA|ASIA)[0-9A-Z]{16}\b", 0),
        ("openai_key", r"\bsk-(?:proj-|ant-)?[A-Za-z0-9_-]{20,}\b", 0),
        ("github_token", r"\bgh[pousr]_[A-Za-z0-9]{36,}\b", 0),
        ("slack_token", r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b", 0),
        ("google_api_key", r"\bAIza[0-9A-Za-z_-]{35}\b", 0),
        ("stripe_key", r"\b(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}\b", 0),
        ("jwt", r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b", 0),
        ("bearer_token", r"(?i)\bbearer\s+[A-Za-z0-9._~+/-]{20,}=*", 0),
        (
            "password_assignment",
            r"(?i)\b(?:password|passwd|pwd|secret|api[_-]?key|token)\s*[:=]\s*['\"]?[^\s'\"]{8,}",
            0,
        ),
    )
)
_CITATION = re.compile(r"\[(\d{1,3})\]")
_MD_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_MD_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_BARE_URL = re.compile(r"\bhttps?://[^\s)>\]]+", re.IGNORECASE)
_SEGMENT_END = re.compile(r"(?<=[.!?:])\s+|\n")
_MAX_BUFFER = 600
_WORD = re.compile(r"\s*\S+\s+")
_PLAIN_WORD = re.compile(r"[a-z]+(?:'[a-z]+)?")
_SENTENCE_STARTERS = frozenset(
    "a an and as at based but by for from here how i if in it its no on or our please so "
    "that the there these this those to we what when where which while who why with yes "
    "you your according answer sorry unfortunately".split()
)


class CanaryLeak(Exception):
    """The answer contains the turn's canary: the system prompt leaked."""


def host_allowed(url: str) -> bool:
    host = (urlsplit(url).hostname or "").lower()
    if not host:
        return True  # relative link: same site
    allowed = {h.lower() for h in settings.OUTPUT_LINK_ALLOWED_HOSTS}
    return any(host == a or host.endswith("." + a) for a in allowed)


def find_secrets(text: str) -> list[tuple[str, int, int]]:
    found: list[tuple[str, int, int]] = []
    for name, pattern in SECRET_PATTERNS:
        found.extend((name, m.start(), m.end()) for m in pattern.finditer(text))
    return found


@dataclass
class OutputGuard:
    """Stateful per turn: `feed` each streamed delta, release what it returns, then call
    `finish`. Raises CanaryLeak as soon as the canary is seen, before releasing it."""

    canary: str
    permitted_text: str  # the user's input and the context shown: PII there may be echoed
    shown_markers: frozenset[int]
    redactions: dict[str, int] = field(default_factory=dict)
    removed_citations: list[int] = field(default_factory=list)
    removed_links: int = 0
    _raw: str = ""
    _buffer: str = ""
    _holding: bool = False
    _at_start: bool = True
    _released: list[str] = field(default_factory=list)

    def _count(self, kind: str) -> None:
        self.redactions[kind] = self.redactions.get(kind, 0) + 1

    def _check_canary(self) -> None:
        if self.canary and self.canary in self._raw:
            raise CanaryLeak(self.canary[:6])
        # Also catch the token with its separator removed or changed.
        core = self.canary.split("-", 1)[-1]
        if core and core.lower() in self._raw.lower():
            raise CanaryLeak(self.canary[:6])

    def feed(self, delta: str) -> str:
        self._raw += delta
        self._check_canary()
        self._buffer += delta
        out = ""
        while True:
            if not self._holding:
                out += self._release_plain_words()
                if not self._holding:
                    return out  # waiting for the rest of a word
            segment = self._release_segment()
            if not segment:
                return out  # holding until the segment is complete
            out += segment
            self._holding = False
            self._at_start = True

    def _is_plain(self, word: str) -> bool:
        """A word that cannot carry a secret, PII, a URL, a citation or the canary: lower-case
        letters only, or a common sentence starter at the start of a sentence."""
        core = word.rstrip(",;:.!?")
        if _PLAIN_WORD.fullmatch(core):
            # A lower-case first name ("john smith") or "name" ("my name is kofi annan") may
            # begin a person's name: hold it for the PII check like a capitalised word.
            return core != "name" and not may_start_lower_case_name(core)
        return self._at_start and core.istitle() and core.lower() in _SENTENCE_STARTERS

    def _release_plain_words(self) -> str:
        """Stream complete plain words at once (tokens reach the user while the model is
        still generating); stop at the first word that needs checking, and hold from there."""
        position, released = 0, []
        while match := _WORD.match(self._buffer, position):
            word = match.group().strip()
            if not self._is_plain(word):
                self._holding = True
                break
            released.append(match.group())
            position = match.end()
            self._at_start = word[-1] in ".!?:"
        self._buffer = self._buffer[position:]
        text = "".join(released)
        if text:
            self._released.append(text)
        return text

    def _release_segment(self) -> str:
        """Release the held text up to the end of its sentence or line, checked."""
        pieces = _SEGMENT_END.split(self._buffer)
        if len(pieces) == 1 and len(self._buffer) < _MAX_BUFFER:
            return ""
        if len(pieces) == 1:
            ready, self._buffer = self._buffer, ""
        else:
            cut = self._buffer.rfind(pieces[-1]) if pieces[-1] else len(self._buffer)
            ready, self._buffer = self._buffer[:cut], self._buffer[cut:]
        # An unterminated private key block must not be released piecemeal.
        if "-----BEGIN" in ready and "PRIVATE KEY" in ready and "-----END" not in ready:
            self._buffer = ready + self._buffer
            if len(self._buffer) < 8 * _MAX_BUFFER:
                return ""
            ready, self._buffer = self._buffer, ""
        return self._release(ready)

    def finish(self) -> str:
        self._check_canary()
        ready, self._buffer = self._buffer, ""
        return self._release(ready) if ready else ""

    @property
    def text(self) -> str:
        return "".join(self._released)

    def _release(self, segment: str) -> str:
        cleaned = self.clean(segment)
        self._released.append(cleaned)
        return cleaned

    def clean(self, segment: str) -> str:
        segment = self._redact_secrets(segment)
        segment = self._redact_pii(segment)
        segment = self._strip_citations(segment)
        return self._strip_links(segment)

    def _redact_secrets(self, text: str) -> str:
        for name, start, end in sorted(find_secrets(text), key=lambda s: -s[1]):
            if text[start:end] in self.permitted_text:
                continue
            self._count(name)
            text = text[:start] + "[redacted secret]" + text[end:]
        return text

    def _redact_pii(self, text: str) -> str:
        if not text.strip():
            return text
        for span in sorted(find_pii(text), key=lambda s: -s.start):
            value = text[span.start : span.end]
            if value in self.permitted_text:
                continue
            self._count(span.entity)
            text = text[: span.start] + f"[redacted {span.entity.lower()}]" + text[span.end :]
        return text

    def _strip_citations(self, text: str) -> str:
        def keep(match: re.Match[str]) -> str:
            marker = int(match.group(1))
            if marker in self.shown_markers:
                return match.group()
            self.removed_citations.append(marker)
            return ""

        return _CITATION.sub(keep, text)

    def _strip_links(self, text: str) -> str:
        def image(match: re.Match[str]) -> str:
            if host_allowed(match.group(2)):
                return match.group()
            self.removed_links += 1
            return ""

        def link(match: re.Match[str]) -> str:
            if host_allowed(match.group(2)) or match.group(2) in self.permitted_text:
                return match.group()
            self.removed_links += 1
            return match.group(1)

        text = _MD_IMAGE.sub(image, text)
        text = _MD_LINK.sub(link, text)

        def bare(match: re.Match[str]) -> str:
            if host_allowed(match.group()) or match.group() in self.permitted_text:
                return match.group()
            self.removed_links += 1
            return "[link removed]"

        return _BARE_URL.sub(bare, text)
