"""Presidio recognisers the project adds to the stock ones: street addresses and person
names that spaCy's small model misses.

spaCy's NER finds most "Firstname Lastname" pairs in well-formed sentences but misses
many (short imperative sentences, lower-case names, a name followed by a title). The
name recogniser here looks names up in public-domain lists (1990 US Census first names
and surnames, see data/names/README.md) and uses the words around them: honorifics and
titles in several languages ("Mr.", "Dr.", "Sra.", "Herr", "Dott."), degrees after a name
("Ph.D.", "M.Sc."), greetings ("Dear …,"), and "my name is …". Lower-case pairs count only
when the first name is not also an ordinary English word ("mark", "will" …), so "will
price" is not a person but "john smith" is.

Names from outside those lists ("Njeru Wandera", "Nguyễn Văn Thắng") are found by what they
are not: two to four capitalised words in Latin letters that an English word list (SCOWL)
does not hold, or holds only as a person's name, side by side in text that is mostly
English, that spaCy does not call a place and that no organisation word ("Analytics",
"GmbH") follows. A single such word is not enough, since product names are made the same
way, except where only a person fits: before "said", "is on leave" or "is chasing", after
"ask" or "check with", with a person's things ("Ouma's flight"), "from the … team", in a
greeting or a sign-off, with a name's honorific suffix ("Takahashi-san"), or joined by "and"
to a name already found. In a message typed all in lower case, two such words side by side
count.

A list of given names and surnames from many countries (data/names/world_names.txt, from
Faker's locales) lets one word be a name anywhere ("Ifeoma will cover"), if it is in title
case and English does not know it as a word or a proper noun ("Jenkins", "Paris" stay
words); in lower-case messages, one such word of four letters or more.
"""

from __future__ import annotations

import keyword
import re
import unicodedata
from dataclasses import dataclass
from typing import Any

from presidio_analyzer import EntityRecognizer, Pattern, PatternRecognizer, RecognizerResult

from orchestration.names import NameLists, name_lists
from orchestration.names import bare as _bare

# -- street addresses ----------------------------------------------------------------------
# USPS Publication 28, appendix C1 (street suffixes), long forms and standard abbreviations;
# each also in the plural ("Lakes", "Shoals", "Harbors").
_STREET_TYPES = (
    "Street|St|Avenue|Ave|Road|Rd|Boulevard|Blvd|Lane|Ln|Drive|Dr|Court|Ct|Way|Place|Pl|"
    "Terrace|Ter|Circle|Cir|Parkway|Pkwy|Highway|Hwy|Square|Sq|Trail|Trl|Alley|Aly|Glen|"
    "Grove|Heights|Hts|Hill|Crossing|Xing|Estate|Garden|Green|Isle|Junction|Jct|Mall|Manor|"
    "Meadow|Mews|Mill|Park|Pass|Passage|Path|Pike|Point|Pt|Ridge|Row|Run|Shore|Spring|"
    "Station|Sta|Summit|Valley|Vly|View|Village|Vlg|Ville|Walk|Well|Loop|Plaza|Plz|Port|Rest|"
    "Route|Rte|Spur|Stravenue|Fort|Forge|Ford|Fall|Ferry|Field|Flat|Creek|Crk|Crescent|Cres|"
    "Cove|Course|Corner|Common|Club|Cliff|Center|Ctr|Causeway|Canyon|Burg|Brook|Branch|"
    "Bridge|Bluff|Bend|Bypass|Camp|Cape|Curve|Dale|Dam|Divide|Expressway|Expy|Extension|Ext|"
    "Freeway|Fwy|Gateway|Harbor|Harbour|Haven|Hollow|Inlet|Island|Key|Knoll|Lake|Landing|"
    "Light|Lock|Lodge|Mission|Motorway|Mount|Mountain|Mtn|Neck|Orchard|Oval|Overpass|Pine|"
    "Plain|Prairie|Radial|Ramp|Ranch|Rapid|River|Shoal|Skyway|Stream|Throughway|Trace|Track|"
    "Trafficway|Tunnel|Turnpike|Underpass|Union|Vista|Via|Viaduct|Close|Gardens|Crest|Annex|"
    "Arcade|Bayou|Beach|Bottom|Crossroad|Forest|Fork|Land|Loaf|Rue|Trailer|Wall"
)
_DIRECTION = r"(?:(?:N|S|E|W|NE|NW|SE|SW|North|South|East|West)\.?\s+)?"
_STREET_NAME = r"(?:(?:[A-Z][a-z]+|[A-Z]|\d{1,3}(?:st|nd|rd|th))\s+){1,3}"
_UNIT = r"(?:,?\s+(?:Apt\.?|Apartment|Suite|Ste\.?|Unit|Floor|Fl\.?|Room|Rm\.?|#)\s*[\w-]+)?"
_US_STATES = (
    "AL|AK|AZ|AR|CA|CO|CT|DE|FL|GA|HI|ID|IL|IN|IA|KS|KY|LA|ME|MD|MA|MI|MN|MS|MO|MT|NE|NV|NH|"
    "NJ|NM|NY|NC|ND|OH|OK|OR|PA|RI|SC|SD|TN|TX|UT|VT|VA|WA|WV|WI|WY|DC|AS|GU|MP|PR|VI|UM|"
    "AA|AE|AP"
)
# ", Springfield, IL 62704" after a street line (city, state, ZIP).
_CITY_STATE = rf"(?:[A-Z][a-z]+\s?){{1,3}},\s*(?:{_US_STATES})\s+\d{{5}}(?:-\d{{4}})?"
_CITY_STATE_ZIP = rf"(?:,?\s+{_CITY_STATE})?"


def street_address_recognizer() -> PatternRecognizer:
    """Presidio has no street-address recogniser: "<number> <name> <type>" (with an
    optional unit and city/state/ZIP), PO boxes, US military/diplomatic addresses, and a
    bare "City, ST 12345"."""
    return PatternRecognizer(
        supported_entity="STREET_ADDRESS",
        name="StreetAddressRecognizer",
        # Case matters here: "2 June 2026 adds the route" is not an address.
        global_regex_flags=re.MULTILINE | re.DOTALL,
        patterns=[
            Pattern(
                "street",
                rf"\b\d{{1,6}}[A-Z]?\s+{_DIRECTION}{_STREET_NAME}(?:{_STREET_TYPES})s?\b\.?"
                rf"{_UNIT}{_CITY_STATE_ZIP}",
                0.6,
            ),
            Pattern(
                "po_box",
                rf"\b(?:P\.?\s?O\.?\s?Box|Post\s+Office\s+Box)\s+\d{{1,6}}\b{_CITY_STATE_ZIP}",
                0.6,
            ),
            Pattern(
                "military",
                r"\b(?:PSC|CMR|Unit|USNS|USNV|USS|USCGC)\s+[\w ]{1,20},\s+"
                r"(?:Box\s+\d+,\s+)?[ADF]PO\s+A[AEP]\s+\d{5}\b",
                0.6,
            ),
            Pattern(
                "city_state_zip",
                rf"\b(?:[A-Z][a-z]+\s?){{1,3}},\s*(?:{_US_STATES})\s+\d{{5}}(?:-\d{{4}})?\b",
                0.5,
            ),
        ],
    )


# -- person names --------------------------------------------------------------------------
_LETTER = r"[^\W\d_]"
_TOKEN = re.compile(rf"{_LETTER}(?:{_LETTER}|['’])*(?:-{_LETTER}(?:{_LETTER}|['’])*)*\.?")
# Forms of address and titles before a name: English, then Nigerian, Indian, Arabic, Thai,
# Ethiopian and Indonesian ("Engr.", "Shri", "Khun", "Ato", "Pak"), Spanish and Portuguese,
# French, German ("Herr", "Univ.Prof."), Italian and Dutch. Never in capitals: "MS Teams",
# "DR site" and "PAK" are no forms of address.
_HONORIFICS = frozenset(
    "mr mrs ms miss mx dr prof sir dame madam mister rev reverend hon pastor fr ing bishop "
    "engr shri smt alhaji hajia sheikh khun ato mbak pak "
    "sr sra srta don dona dna lic licda lcdo lcda mtro mtra dra arq dom "
    "mme mlle "
    "herr frau univ dipl "
    "sig sigra dott dottssa avv "
    "dhr mevr".split()
)
_CALENDAR = frozenset(
    "monday tuesday wednesday thursday friday saturday sunday january february march april "
    "may june july august september october november december".split()
)
# Lower-case particles inside a name ("Christophe du Weiss", "Ludwig van Beethoven").
_PARTICLES = frozenset(
    "de du da del della der den van von bin binti al el la le di dos das".split()
)
_SUFFIXES = frozenset(
    "jr sr ii iii iv md dds phd dvm esq cpa rn mba msc bsc meng beng llm llb mph".split()
)
# A degree written with full stops after a name ("B.Sc.", "M.A.", "Ph.D."), with or without
# a comma before it.
_DOTTED_DEGREE = re.compile(r",?[ \t]+(?:[A-Z][a-z]{0,3}\.){2,3}(?!\w)")
_GREETINGS = frozenset("dear hi hello hey attn attention thanks cheers morning".split())
_TIMES_OF_DAY = frozenset("morning afternoon evening".split())
_NOT_ADDRESSEES = frozenset("team all folks everyone there guys colleagues sir madam both".split())
_NAME_IS = re.compile(
    r"\b(?:my|his|her|their|the\s+(?:employee|customer|client|patient|candidate)'?s?)\s+"
    r"(?:full\s+)?name\s+is\s+|\bname\s*:\s*",
    re.IGNORECASE,
)


def _given(token: str, lists: NameLists) -> bool:
    """A first name, or a hyphenated one whose first part is ("Lucas-Robert")."""
    low = _bare(token)
    return low not in lists.stop and (low in lists.first or low.split("-")[0] in lists.first)


def _capitalised(token: str) -> bool:
    """Title case ("Okafor", "McEvilly-Lucid"), or all capitals of four letters or more
    (short capitals are acronyms: "AI", "WAL")."""
    word = token.rstrip(".")
    if not word[0].isupper():
        return False
    if word.isupper():
        return len(word) >= 4
    return word[1:].islower() or "-" in word or any(c.isupper() for c in word[2:])


Token = tuple[str, int, int]  # a word, its start and end
Span = tuple[int, int, float]  # start, end, score


class NameGazetteerRecognizer(EntityRecognizer):  # type: ignore[misc]
    """PERSON from name lists and the words around a name (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(supported_entities=["PERSON"], name="NameGazetteerRecognizer")

    def load(self) -> None:
        name_lists()

    def analyze(self, text: str, entities: list[str], nlp_artifacts: Any = None) -> list[Any]:
        if "PERSON" not in entities:
            return []
        lists = name_lists()
        message = _Message(
            text,
            [(m.group(), m.start(), m.end()) for m in _TOKEN.finditer(text)],
            lists,
            english=_english(text, lists),
            places=_places(nlp_artifacts),
        )
        spans = _name_spans(message)
        if message.english:
            spans += _listed_with(text, spans + _people(nlp_artifacts), lists)
        results: list[RecognizerResult] = []
        for start, end, score in spans:
            degree = _DOTTED_DEGREE.match(text, end)
            if degree:
                end = degree.end()
            # A sentence's full stop is not part of the name ("… to Ingrid Solberg.").
            elif text[end - 1] == "." and _bare(text[start:end].split()[-1]) not in _SUFFIXES:
                if len(text[start:end].split()[-1]) > 2:
                    end -= 1
            results.append(RecognizerResult("PERSON", start, end, score))
        return results


@dataclass(frozen=True, slots=True)
class _Message:
    """One message's words, and what the name rules ask about them."""

    text: str
    tokens: list[Token]
    lists: NameLists
    english: bool  # most of its lower-case words are English (`_english`)
    places: list[tuple[int, int]]  # what spaCy calls a place

    def word(self, i: int) -> str:
        return self.tokens[i][0]

    def adjacent(self, i: int) -> bool:
        """tokens[i] and tokens[i + 1] are separated by blanks only."""
        n = len(self.tokens)
        return i + 1 < n and not self.text[self.tokens[i][2] : self.tokens[i + 1][1]].strip()

    def in_place(self, start: int, end: int) -> bool:
        return any(s < end and start < e for s, e in self.places)

    def extend(self, i: int, end: int) -> int:
        """Swallow a trailing "Jr." / "MD" / "PhD" (with or without a comma)."""
        if i + 1 < len(self.tokens) and _bare(self.word(i + 1)) in _SUFFIXES:
            gap = self.text[self.tokens[i][2] : self.tokens[i + 1][1]]
            if gap.strip() in {"", ","}:
                return self.tokens[i + 1][2]
        return end

    def further_parts(self, j: int, *, limit: int) -> int:
        """From a name's part at `j`, the index of its last part: the capitalised words
        after it that are surnames or unfamiliar to English, with up to two particles
        before one ("de la Guibert"), up to the token at `limit`."""
        n, lists = len(self.tokens), self.lists
        while j < limit and self.adjacent(j) and not _ends_sentence(self.word(j)):
            k = j + 1
            while k < n - 1 and k - j <= 2 and _bare(self.word(k)) in _PARTICLES:
                if not self.adjacent(k):
                    break
                k += 1
            word = self.word(k)
            known_surname = (
                _capitalised(word)
                and _surname(word, lists)
                and _bare(word) not in lists.ambiguous_last
            )
            if not (known_surname or _unfamiliar(word, lists)):
                break
            j = k
        return j

    def said_by(self, i: int) -> bool:
        """tokens[i] is followed by something only a person does or has ("said", "already
        approved", "is on leave", "is still chasing", "'s laptop", "from the Hanoi team")."""
        after = [_bare(t[0]) for t in self.tokens[i + 1 : i + 6]]
        if not after or not self.adjacent(i):
            return False
        if _POSSESSIVE.search(self.word(i)):
            return after[0] in _BELONGINGS
        if after[:2] == ["from", "the"]:
            return any(w in _UNITS for w in after[2:5])
        if after[0] in _ADVERBS:
            after = after[1:]
        if after[:1] and after[0] in _PERSON_VERBS:
            return True
        question = i > 0 and _bare(self.word(i - 1)) in {"is", "was"}  # "Is X still …"
        rest = after if question else after[1:] if after[:1] in (["is"], ["was"]) else None
        if rest is None:
            return False
        if rest[:1] and rest[0] in _ADVERBS:
            rest = rest[1:]
        if rest[:1] == ["off"]:  # "is off sick", not "is off"
            rest = rest[1:]
        return bool(rest) and (rest[0] in _ABSENT | _PERSON_DOING or rest[:2] == ["on", "leave"])

    def addressed(self, i: int) -> bool:
        """tokens[i] is what one asks, thanks, copies or checks with."""
        if i == 0 or self.text[self.tokens[i - 1][2] : self.tokens[i][1]].strip():
            return False
        if self.word(i - 1).endswith("."):  # "… by email. Arr."
            return False
        before = _bare(self.word(i - 1))
        if before in _ADDRESSING:
            return True
        return i > 1 and f"{_bare(self.word(i - 2))} {before}" in _ADDRESSING


def _name_spans(m: _Message) -> list[Span]:
    """Every rule's names: the rules that read word by word (the first that matches at a
    word takes it and the words of the name), then those that read the whole message."""
    spans: list[Span] = []
    i = 0
    while i < len(m.tokens):
        for rule in _WORD_RULES:
            found = rule(m, i)
            if found is not None:
                span, i = found
                spans.append(span)
                break
        else:
            i += 1
    return spans + _lower_case_pairs(m) + _lower_case_world(m) + _signed_off(m) + _named(m)


def _honorific(m: _Message, i: int) -> tuple[Span, int] | None:
    """ "Mr. Okonkwo", "Dr Ana María Pérez": an honorific and the capitalised words after it;
    a German compound title is one ("Dipl.-Ing. Jutta Kühn", "Dr.-Ing.")."""
    word, start, _ = m.tokens[i]
    low, n = _bare(word), len(m.tokens)
    if low not in _HONORIFICS or not word[0].isupper() or word.rstrip(".").isupper():
        return None
    h = i
    while h + 1 < n and m.text[m.tokens[h][2] : m.tokens[h + 1][1]] == "-":
        if not m.word(h + 1).endswith("."):
            break
        h += 1
    if not (m.adjacent(h) and _capitalised(m.word(h + 1))):
        return None
    j = h + 1
    while j + 1 < n and j - h < 3 and m.adjacent(j) and _capitalised(m.word(j + 1)):
        if _bare(m.word(j + 1)) in m.lists.stop:
            break
        j += 1
    return (start, m.extend(j, m.tokens[j][2]), 0.85), j + 1


def _greeting(m: _Message, i: int) -> tuple[Span, int] | None:
    """ "Dear Priya," / "Hi Okonkwo," / "Good morning Emeka,": a greeting, one or two
    capitalised words, a comma."""
    word, low = m.word(i), _bare(m.word(i))
    greeting = (low in _GREETINGS and word[0].isupper()) or (
        low in _TIMES_OF_DAY and i > 0 and _bare(m.word(i - 1)) == "good"
    )
    if not (greeting and m.adjacent(i) and _capitalised(m.word(i + 1))):
        return None
    j = i + 1
    if m.adjacent(j) and _capitalised(m.word(j + 1)):
        j += 1
    after = m.text[m.tokens[j][2] : m.tokens[j][2] + 1]
    addressee = {_bare(m.word(k)) for k in range(i + 1, j + 1)}
    if after not in {",", "!", ":", "\n", ""} or addressee & (m.lists.stop | _NOT_ADDRESSEES):
        return None
    return (m.tokens[i + 1][1], m.tokens[j][2], 0.7), j + 1


def _gazetteer(m: _Message, i: int) -> tuple[Span, int] | None:
    """First name [middle name or initial] surname, from the lists."""
    if not (_given(m.word(i), m.lists) and m.adjacent(i)):
        return None
    found = _pair(m, i)
    if found is None:
        return None
    j, score = found
    return (m.tokens[i][1], m.extend(j, m.tokens[j][2]), score), j + 1


def _pair(m: _Message, i: int) -> tuple[int, float] | None:
    """From a first name at `i`: the index of the name's last token, and a score."""
    lists, n = m.lists, len(m.tokens)
    first, nxt = m.word(i), m.word(i + 1)
    if first.islower():
        if (
            nxt.islower()
            and _bare(first) not in lists.ambiguous_first
            and _surname(nxt, lists)
            and not nxt.endswith(".")
        ):
            return i + 1, 0.6
        return None
    if not _capitalised(first):
        return None
    # The run of capitalised words (and particles before one) after the first name.
    j = i
    while j + 1 < n and j - i < 4 and m.adjacent(j) and not _ends_sentence(m.word(j)):
        word = m.word(j + 1)
        low = _bare(word)
        if _capitalised(word) and low not in lists.stop:
            j += 1
        elif low in _PARTICLES and j + 2 < n and m.adjacent(j + 1) and _capitalised(m.word(j + 2)):
            j += 2
        elif len(word.rstrip(".")) == 1 and word[0].isupper():  # a middle initial
            j += 1
        else:
            break
    if j == i:
        return None
    # A first name that is also a word ("May", "Grace") needs a known surname after it,
    # or one that English does not know ("Grace Adetokunbo").
    if _bare(first) in lists.ambiguous_first and not (
        _surname(nxt, lists) or _unfamiliar(nxt, lists)
    ):
        return None
    return j, 0.75


def _surname_after_unknown(m: _Message, i: int) -> tuple[Span, int] | None:
    """ "Ranveer Dutt": an unknown capitalised word mid-sentence, then a surname that is not
    also an English word (and any further parts: "Pascual Hugo Alba")."""
    word, start, _ = m.tokens[i]
    low, lists = _bare(word), m.lists
    if not (
        m.adjacent(i)
        and not _ends_sentence(word)
        and _capitalised(word)
        and low not in lists.stop
        and low not in lists.ambiguous_last
        and not _sentence_start(m.text, start)
    ):
        return None
    nxt = m.word(i + 1)
    if not (
        _capitalised(nxt)
        and _bare(nxt) in lists.last
        and _bare(nxt) not in lists.ambiguous_last
        and _bare(nxt) not in _CALENDAR
    ):
        return None
    j = m.further_parts(i + 1, limit=i + 3)
    return (start, m.extend(j, m.tokens[j][2]), 0.6), j + 1


def _unfamiliar_run(m: _Message, i: int) -> tuple[Span, int] | None:
    """ "Njeru Wandera", "Adèle de la Guibert": two to four capitalised words that English
    knows only as people's names, if at all, and that spaCy does not call a place; not in
    text that is mostly not English, nor an organisation ("Northwind Analytics")."""
    word, start, _ = m.tokens[i]
    if not (m.english and _unfamiliar(word, m.lists) and m.adjacent(i)):
        return None
    if _ends_sentence(word):
        return None
    j = m.further_parts(i, limit=i + 3)
    if j == i or m.in_place(start, m.tokens[j][2]):
        return None
    if any(_bare(t[0]) in _ORGANISATION_WORDS for t in m.tokens[i : j + 2]):
        return None
    return (start, m.extend(j, m.tokens[j][2]), 0.6), j + 1


def _suffixed(m: _Message, i: int) -> tuple[Span, int] | None:
    """ "Yamamoto-san", "Priya-ji": a name with the honorific suffix its language adds."""
    word, start, end = m.tokens[i]
    if m.english and _SUFFIXED.fullmatch(word) and _unfamiliar(word.split("-")[0], m.lists):
        return (start, end, 0.7), i + 1
    return None


def _spoken_of(m: _Message, i: int) -> tuple[Span, int] | None:
    """ "Priyanka said …", "ask Lerato to …", "Per Kobayashi, …": one unfamiliar word where
    a person is spoken of or to."""
    word, start, end = m.tokens[i]
    if not (m.english and _unfamiliar(word, m.lists)):
        return None
    if not (m.said_by(i) or m.addressed(i)) or m.in_place(start, end):
        return None
    return (start, m.extend(i, end), 0.6), i + 1


def _world_name(m: _Message, i: int) -> tuple[Span, int] | None:
    """ "Ifeoma will cover", "Iosefa has the keys": one capitalised word that a list of names
    from many countries holds and English does not know in any sense, unless spaCy calls it
    a place or an organisation word follows."""
    word, start, end = m.tokens[i]
    if not (m.english and _title_case(word) and _world(word, m.lists)) or m.in_place(start, end):
        return None
    if i + 1 < len(m.tokens) and _bare(m.word(i + 1)) in _ORGANISATION_WORDS:
        return None
    possessive = _POSSESSIVE.search(word.rstrip("."))
    if possessive:  # "Ifeoma's": the name, not its "'s"
        end = start + possessive.start()
    return (start, m.extend(i, end), 0.5), i + 1


_WORD_RULES = (
    _honorific,
    _greeting,
    _gazetteer,
    _surname_after_unknown,
    _unfamiliar_run,
    _suffixed,
    _spoken_of,
    _world_name,
)


def _lower_case_pairs(m: _Message) -> list[Span]:
    """ "pls add rohit deshpande to …": in a message typed all in lower case, two words side
    by side that English does not know, one of them five letters or more ("sso saml" and
    other short abbreviations are not names). The pair itself does not count against the
    message being English."""
    if any(ch.isupper() for ch in m.text):
        return []
    spans: list[Span] = []
    for k in range(len(m.tokens) - 1):
        pair = [m.word(k).rstrip("."), m.word(k + 1).rstrip(".")]
        if (
            m.adjacent(k)
            and not m.word(k).endswith(".")
            and all(len(w) >= 3 and _unfamiliar(w.capitalize(), m.lists) for w in pair)
            and max(map(len, pair)) >= 5
            and _english(m.text, m.lists, ignore=frozenset(pair))
        ):
            spans.append((m.tokens[k][1], m.tokens[k + 1][2], 0.5))
    return spans


def _lower_case_world(m: _Message) -> list[Span]:
    """ "is njeri around?": in a message typed all in lower case, a word of four letters or
    more from the list of names from many countries that English does not know, nor Python
    ("elif" is a Turkish name too)."""
    if any(ch.isupper() for ch in m.text):
        return []
    spans: list[Span] = []
    for word, start, _ in m.tokens:
        bare_word = word.rstrip(".")
        if (
            len(bare_word) >= 4
            and bare_word not in _KEYWORDS
            and _world(bare_word, m.lists)
            and _english(m.text, m.lists, ignore=frozenset([bare_word]))
        ):
            spans.append((start, start + len(bare_word), 0.5))
    return spans


def _signed_off(m: _Message) -> list[Span]:
    """ "Regards, Emeka" / "— Iryna" / "/Anders": the one or two words that end a message
    after a sign-off, when they could be a name."""
    sign_off = _SIGN_OFF.search(m.text)
    if not (m.english and sign_off):
        return []
    words = sign_off.group(1).split()
    if all(_may_be_name(w, m.lists) for w in words):
        return [(sign_off.start(1), sign_off.end(1), 0.6)]
    return []


def _named(m: _Message) -> list[Span]:
    """ "my name is kofi annan": whatever follows, up to three non-stop words."""
    spans: list[Span] = []
    for match in _NAME_IS.finditer(m.text):
        words = [t for t in m.tokens if t[1] >= match.end()][:3]
        taken: list[Token] = []
        for word, s, e in words:
            if _bare(word) in m.lists.stop or (taken and m.text[taken[-1][2] : s].strip()):
                break
            taken.append((word, s, e))
        if taken:
            spans.append((taken[0][1], taken[-1][2], 0.8))
    return spans


# What only a person does, after a name ("Priyanka said", "Krüger already approved").
_PERSON_VERBS = frozenset(
    "said says asked asks mentioned mentions confirmed confirms approved approves signed "
    "reckons reckoned thinks thought wrote writes told tells replied replies agreed agrees "
    "flagged promised suggested explained noted emailed phoned messaged joined booked".split()
)
_ADVERBS = frozenset("already also just still never really probably".split())
_PERSON_DOING = frozenset(
    "chasing handling covering travelling traveling presenting interviewing visiting".split()
)
# What a person has, after a name's possessive ("Ouma's expense claim").
_BELONGINGS = frozenset(
    "laptop flight visa manager expense expenses badge desk leave salary payslip onboarding "
    "birthday contract passport phone".split()
)
_UNITS = frozenset("team office department desk".split())  # "Thảo from the Hanoi team"
_POSSESSIVE = re.compile(r"['’]s$")
_SUFFIXED = re.compile(r"[^\W\d_]+-(?:san|sama|kun|chan|ji|ssi|nim)(?:['’]s)?")
_ABSENT = frozenset("away sick ill unwell".split())  # not "off", "out": a switch is too
# What one does to a person, before a name ("ask Lerato", "check with Sujata").
_ADDRESSING = frozenset(
    "ask tell ping cc thank remind email per".split()
    + ["check with", "talk to", "speak to", "speak with", "sync with", "meet with", "reach"]
)
_NAME_WORD = r"[^\W\d_]+(?:['’-][^\W\d_]+)*"
_SIGN_OFF = re.compile(
    r"(?:(?i:regards|thanks|thank\s+you|cheers|best|sincerely)[,!.]?|(?:^|\s)[—–/-]|\n)"
    rf"[ \t]*({_NAME_WORD}(?:[ \t]+{_NAME_WORD})?)[ \t]*[.!]?\s*\Z"
)
# Words that make a run of capitalised words an organisation ("Northwind Analytics").
_ORGANISATION_WORDS = frozenset(
    "analytics gmbh ag sa spa srl bv nv oy ab as ltda sarl kg se plc llc inc ltd co corp "
    "grupo gruppe groupe gruppo industrie industria logistik consulting digital".split()
)
_KEYWORDS = frozenset(keyword.kwlist)
_PUNCTUATION = ".,;:!?()[]{}\"'“”‘’«»"
_CONTRACTION = re.compile(r"['’](?:s|re|m|ll|ve|d)$")
_NAME_PREFIX = re.compile(r"^(?:Mc|Mac|O['’]|D['’])(?=[^\W\d_])")


def _latin(word: str) -> bool:
    """Every letter of `word` is a Latin one ("Nguyễn", not "Свободным")."""
    return all(unicodedata.name(ch, "").startswith("LATIN") for ch in word if ch.isalpha())


def _unfamiliar(token: str, lists: NameLists) -> bool:
    """A capitalised word in Latin letters that English does not know, or knows only as a
    person's name ("Njeru", "Jäkel", "Ahmed", "O'Brien"); not a word ("Atlas"), a contraction
    ("It's"), a place or brand English knows ("Lagos"), nor a word like "EvilBot"."""
    word = _CONTRACTION.sub("", token.rstrip("."))
    for part in word.split("-"):
        part = _NAME_PREFIX.sub("", part)
        if len(part) < 2 or not (part[0].isupper() and part[1:].islower()):
            return False
        if not _latin(part):
            return False
        # Accents are compared as written: "Hùng" is not the English "hung".
        low, written = _bare(part), part.lower()
        if low in lists.stop or low in _CALENDAR or written in lists.english_words:
            return False
        if written in lists.english_proper and low not in lists.first and low not in lists.last:
            return False
    return True


def _title_case(token: str) -> bool:
    """ "Ifeoma", "Jean-Pierre", "O'Neill": not "IBAN", "DACH" nor "DAGs"."""
    parts = _NAME_PREFIX.sub("", _CONTRACTION.sub("", token.rstrip("."))).split("-")
    return all(len(p) >= 2 and p[0].isupper() and p[1:].islower() for p in parts)


def _world(token: str, lists: NameLists) -> bool:
    """A name from the list of names from many countries that English does not know, as a
    word or as a proper noun ("Ifeoma", "Nguyễn"; not "Jenkins", "Paris" or "Grace")."""
    word = _CONTRACTION.sub("", token.rstrip("."))
    written, parts = word.lower(), _bare(word).split("-")
    if written in lists.english_words or written in lists.english_proper:
        return False
    if not _latin(word):
        return False
    return all(len(p) >= 3 and p in lists.world and p not in lists.stop for p in parts)


def _may_be_name(word: str, lists: NameLists) -> bool:
    """A word that could be a name on its own: unfamiliar to English, or a first name that
    is not a month or a day ("January", "May")."""
    return _unfamiliar(word, lists) or (_given(word, lists) and _bare(word) not in _CALENDAR)


def _english(text: str, lists: NameLists, ignore: frozenset[str] = frozenset()) -> bool:
    """Whether most of the text's lower-case words (but those in `ignore`) are English: only
    then does a word missing from an English word list say anything (German capitalises every
    noun). Words are what blanks separate, so an e-mail address's parts do not count."""
    words = (raw.strip(_PUNCTUATION) for raw in text.split())
    lower = [w for w in words if w.isalpha() and w.islower() and w not in ignore]
    known = sum(1 for w in lower if w in lists.english_words or w in lists.stop)
    return bool(lower) and known >= 0.75 * len(lower)


def _places(nlp_artifacts: Any) -> list[tuple[int, int]]:
    """Character spans spaCy labelled a place (Presidio's LOCATION). Not its nationalities:
    the small model calls many unfamiliar given names one ("Selamawit")."""
    entities = getattr(nlp_artifacts, "entities", None) or []
    return [(e.start_char, e.end_char) for e in entities if e.label_ == "LOCATION"]


def _people(nlp_artifacts: Any) -> list[Span]:
    """Character spans spaCy labelled a person."""
    entities = getattr(nlp_artifacts, "entities", None) or []
    return [(e.start_char, e.end_char, 0.85) for e in entities if e.label_ == "PERSON"]


# Not a comma: "Alex Rivera, Contoso" is a name and a company.
_LIST_AFTER = re.compile(rf"(?:['’]s)?[ \t]+(?:and|&)[ \t]+({_NAME_WORD})")
_LIST_BEFORE = re.compile(rf"({_NAME_WORD})(?:['’]s)?[ \t]+(?:and|&)[ \t]+\Z")


def _listed_with(text: str, found: list[Span], lists: NameLists) -> list[Span]:
    """ "Arash and Leila Karimi", "Beatriz's and Rodrigo's": one capitalised word that could
    be a name, joined by "and" to a name already found, is a name too."""
    out = []
    for start, end, _ in found:
        neighbours = [_LIST_AFTER.match(text, end), _LIST_BEFORE.search(text, 0, start)]
        for match in filter(None, neighbours):
            word = match.group(1)
            if _capitalised(word) and _may_be_name(word, lists):
                out.append((match.start(1), match.end(1), 0.6))
    return out


def _ends_sentence(token: str) -> bool:
    return token.endswith(".") and len(token) > 2


def _sentence_start(text: str, start: int) -> bool:
    before = text[:start].rstrip(" \t\"'(")
    return not before or before[-1] in ".!?:;\n"


def _surname(token: str, lists: NameLists) -> bool:
    low = _bare(token)
    if low in lists.stop:
        return False
    return all(part in lists.last for part in low.replace("’", "'").split("-"))
