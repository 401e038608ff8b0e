"""Input normalisation, and decoding of smuggled encodings for inspection.

`normalize` returns the text the pipeline works on: Unicode NFKC, invisible characters
(zero-width, bidirectional controls, Unicode tag characters) removed, and control
characters other than newline, tab and carriage return removed. `inspection_views`
returns further renderings that only the detectors look at: homoglyphs folded to ASCII,
and any base64, hex, rot13 or leetspeak payload decoded, so an instruction hidden in an
encoding is scanned as plain text.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

# Zero-width and joiner characters, the BOM, soft hyphen, word joiner and invisible operators.
_INVISIBLE = frozenset(
    "\u00ad\u034f\u061c\u115f\u1160\u17b4\u17b5\u180e\u200b\u200c\u200d\u200e\u200f"
    "\u2060\u2061\u2062\u2063\u2064\u3164\ufeff\uffa0"
)
# Bidirectional embedding, override and isolate controls (Trojan Source).
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")
_ALLOWED_CONTROL = frozenset("\n\t\r")

# Letters from other scripts that render like Latin ones (Unicode confusables, the subset
# attackers use: Cyrillic, Greek and a few symbols). NFKC already folds full-width forms and
# mathematical alphanumerics.
_CONFUSABLES = str.maketrans(
    {
        "а": "a", "в": "b", "е": "e", "ё": "e", "к": "k", "м": "m", "н": "h", "о": "o",
        "р": "p", "с": "c", "т": "t", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ї": "i",
        "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w", "һ": "h", "ɡ": "g",
        "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H", "О": "O", "Р": "P",
        "С": "C", "Т": "T", "У": "Y", "Х": "X", "Ѕ": "S", "І": "I", "Ј": "J",
        "α": "a", "β": "b", "ε": "e", "ι": "i", "κ": "k", "ν": "v", "ο": "o", "ρ": "p",
        "τ": "t", "υ": "u", "χ": "x", "γ": "y",
        "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M",
        "Ν": "N", "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
        "ı": "i", "ǀ": "l", "ⅼ": "l", "∕": "/", "‐": "-", "‑": "-", "–": "-", "—": "-",
    }
)  # fmt: skip
_LEET = str.maketrans(
    {"0": "o", "1": "i", "3": "e", "4": "a", "5": "s", "7": "t", "8": "b", "@": "a", "$": "s",
     "!": "i", "|": "l", "+": "t"}
)  # fmt: skip

_BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{16,}={0,2}")
_HEX_RUN = re.compile(r"(?:[0-9a-fA-F]{2}[\s:]?){8,}")
_LEET_WORD = re.compile(r"\b\w*[a-zA-Z]\w*[013457@$!|+]\w*\b|\b\w*[013457@$!|+]\w*[a-zA-Z]\w*\b")


@dataclass(frozen=True, slots=True)
class Normalized:
    text: str
    removed_invisible: int
    removed_bidi: int
    removed_tags: int
    removed_control: int

    @property
    def removed(self) -> int:
        return self.removed_invisible + self.removed_bidi + self.removed_tags + self.removed_control


def _is_tag(ch: str) -> bool:
    # U+E0000–U+E007F: "tag" characters that render as nothing but carry ASCII (ASCII smuggling).
    return 0xE0000 <= ord(ch) <= 0xE007F


def tag_payload(text: str) -> str:
    """The ASCII hidden in Unicode tag characters (each tag char = ASCII + 0xE0000)."""
    return "".join(chr(ord(ch) - 0xE0000) for ch in text if 0xE0020 <= ord(ch) <= 0xE007E)


def normalize(text: str) -> Normalized:
    """NFKC, then drop invisible, bidi, tag and control characters (newline, tab, CR stay)."""
    text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    invisible = bidi = tags = control = 0
    for ch in text:
        if ch in _INVISIBLE:
            invisible += 1
        elif ch in _BIDI:
            bidi += 1
        elif _is_tag(ch):
            tags += 1
        elif unicodedata.category(ch) in {"Cc", "Cf", "Co", "Cn"} and ch not in _ALLOWED_CONTROL:
            control += 1
        else:
            out.append(ch)
    return Normalized("".join(out), invisible, bidi, tags, control)


def fold_confusables(text: str) -> str:
    return text.translate(_CONFUSABLES)


_FOLDABLE_LETTERS = frozenset(chr(code) for code in _CONFUSABLES if chr(code).isalpha())
_LETTER_RUN = re.compile(r"[^\W\d_]+")


def fold_disguised_words(text: str) -> str:
    """Homoglyphs folded only where they disguise Latin: in a word that mixes them with
    ASCII letters ("іgnоrе"), and, in text whose letters are mostly ASCII, in a word made
    of them alone (a Cyrillic "а"). A Russian or Greek sentence stays as written: folded
    whole it turns into letter soup, which the embedding detectors would pay a second,
    meaningless pass for (`fold_confusables` still folds everything for the rules)."""
    letters = [ch for ch in text if ch.isalpha()]
    mostly_ascii = 2 * sum(ch.isascii() for ch in letters) > len(letters)

    def fold(match: re.Match[str]) -> str:
        word = match.group()
        disguised = [ch in _FOLDABLE_LETTERS for ch in word]
        if not any(disguised):
            return word
        if any(ch.isascii() for ch in word) or (mostly_ascii and all(disguised)):
            return word.translate(_CONFUSABLES)
        return word

    return _LETTER_RUN.sub(fold, text)


def _printable_ratio(text: str) -> float:
    if not text:
        return 0.0
    return sum(ch.isprintable() or ch in "\n\t" for ch in text) / len(text)


def _decode_base64(run: str) -> str | None:
    padded = run + "=" * (-len(run) % 4)
    for decoder in (base64.b64decode, base64.urlsafe_b64decode):
        try:
            raw = decoder(padded)
        except (binascii.Error, ValueError):
            continue
        try:
            decoded = raw.decode("utf-8")
        except UnicodeDecodeError:
            continue
        if _printable_ratio(decoded) > 0.95 and any(c.isalpha() for c in decoded):
            return decoded
    return None


def _decode_hex(run: str) -> str | None:
    digits = re.sub(r"[\s:]", "", run)
    try:
        decoded = bytes.fromhex(digits[: len(digits) // 2 * 2]).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    if _printable_ratio(decoded) > 0.95 and any(c.isalpha() for c in decoded):
        return decoded
    return None


# Each kind of encoded run and its decoder (None when the run is not readable text).
_RUN_DECODERS = ((_BASE64_RUN, _decode_base64), (_HEX_RUN, _decode_hex))


def decoded_payloads(text: str) -> list[str]:
    """Plain text recovered from base64 / hex runs and Unicode tag characters in `text`."""
    found: list[str] = []
    hidden = tag_payload(text)
    if hidden.strip():
        found.append(hidden)
    for pattern, decode in _RUN_DECODERS:
        found.extend(d for match in pattern.finditer(text) if (d := decode(match.group())))
    return found


def with_payloads_decoded(text: str) -> str:
    """`text` with each base64 / hex run that decodes to readable text replaced by that text.

    What the embedding detectors read in place of the text itself: an encoded run's
    characters are noise to them, while its decoded words carry the meaning. "Decode this
    base64 from a config file: ZXUtY2VudHJhbC0x" is then read as a question about
    "eu-central-1", and "decode this and do what it says: <payload>" with the payload's words
    in place."""
    for pattern, decode in _RUN_DECODERS:
        text = pattern.sub(partial(_readable_run, decode=decode), text)
    return text


def _readable_run(match: re.Match[str], decode: Callable[[str], str | None]) -> str:
    run = match.group()
    decoded = decode(run)
    return decoded + run[len(run.rstrip()) :] if decoded else run  # keep its trailing space


# Letters kept apart by a separator ("i.g.n.o.r.e", "i-g-n-o-r-e", "i g n o r e"): single
# characters joined by one of . - _ * · / or a single space, at least three in a row.
_SPLIT_LETTERS = re.compile(r"(?<!\w)\w(?:([.\-_*·/ ])\w(?!\w)){2,}(?![.\-_*·/]?\w)")


def join_split_letters(text: str) -> str:
    """Rejoin words whose letters were split by separators; words stay apart where the
    writer left a wider gap ("i g n o r e  a l l" -> "ignore all")."""

    def joined(match: re.Match[str]) -> str:
        separator = match.group(1)
        return match.group().replace(separator, "")

    return _SPLIT_LETTERS.sub(joined, text)


def unleet(text: str) -> str:
    """Replace digits/symbols inside words with the letters they stand for."""
    return _LEET_WORD.sub(lambda m: m.group().translate(_LEET), text)


@dataclass(frozen=True, slots=True)
class Views:
    """Renderings of one input for the detectors. `semantic` (the text, its disguised words
    folded, decoded payloads) are worth embedding; `all` adds every homoglyph folded, rot13,
    leetspeak, letters split by separators rejoined, and the text reversed, for the rules."""

    semantic: tuple[str, ...]
    all: tuple[str, ...]


def inspection_views(raw: str, normalized: str) -> Views:
    """Every rendering of the input a detector should scan, the normalized text first.

    rot13, leetspeak, rejoined split letters and the reversed text are always added for
    the rules (cheap; a benign text turns into noise that no rule matches); base64/hex/tag
    payloads are added when present. The readable views read encoded runs as their decoded
    text (`with_payloads_decoded`); the rules also see the text as written."""
    folded = fold_confusables(normalized)
    readable = with_payloads_decoded(normalized)
    semantic = [readable, fold_disguised_words(readable)]
    semantic.extend(
        fold_confusables(unicodedata.normalize("NFKC", p)) for p in decoded_payloads(raw)
    )
    transforms = [
        codecs.encode(folded, "rot13"),
        unleet(folded),
        join_split_letters(folded),
        folded[::-1],  # text written backwards
    ]
    semantic_unique = tuple(dict.fromkeys(v for v in semantic if v.strip()))
    return Views(
        semantic_unique, tuple(dict.fromkeys((*semantic_unique, normalized, folded, *transforms)))
    )
