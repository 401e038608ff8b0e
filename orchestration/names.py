"""Public-domain name lists (1990 US Census first names and surnames), names from many
countries (Faker's locales) and an English word list (SCOWL), see data/names/README.md,
shared by the PII name recogniser and the output guard's streaming fast path. Plain Python,
no Presidio: cheap to import."""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

NAMES = Path(__file__).parent / "data" / "names"


def _read(name: str) -> frozenset[str]:
    lines = (NAMES / name).read_text().splitlines()
    return frozenset(line.strip() for line in lines if line.strip() and not line.startswith("#"))


@dataclass(frozen=True)
class NameLists:
    first: frozenset[str]
    last: frozenset[str]
    ambiguous_first: frozenset[str]
    ambiguous_last: frozenset[str]
    stop: frozenset[str]
    english_words: frozenset[str]  # lower-case English words ("café")
    english_proper: frozenset[str]  # capitalised English entries (places, brands), lower-cased
    world: frozenset[str]  # given names and surnames from many countries, as `bare` spells them


@lru_cache(maxsize=1)
def name_lists() -> NameLists:
    from spacy.lang.en.stop_words import STOP_WORDS

    english = _read("english_words.txt")
    return NameLists(
        first=_read("first_names.txt"),
        last=_read("surnames.txt"),
        ambiguous_first=_read("ambiguous_first_names.txt"),
        ambiguous_last=_read("ambiguous_surnames.txt"),
        stop=frozenset(w.lower() for w in STOP_WORDS),
        english_words=frozenset(w for w in english if w.islower()),
        english_proper=frozenset(w.lower() for w in english if not w.islower()),
        world=_read("world_names.txt"),
    )


def bare(token: str) -> str:
    """Lower-case, without a trailing dot or accents ("Noemí" → "noemi")."""
    folded = unicodedata.normalize("NFKD", token.rstrip(".").lower())
    return "".join(ch for ch in folded if not unicodedata.combining(ch))


def may_start_lower_case_name(word: str) -> bool:
    """Whether a lower-case word could begin a person's name the PII recogniser finds in
    lower case: a first name that is not also an ordinary word ("john" in "john smith"), or
    a word of three letters or more that English does not know ("rohit" in "rohit
    deshpande")."""
    low = bare(word)
    lists = name_lists()
    if low in lists.stop:
        return False
    if low in lists.first and low not in lists.ambiguous_first:
        return True
    return len(word) >= 3 and word.isalpha() and word.lower() not in lists.english_words
