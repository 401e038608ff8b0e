"""PII detection (Presidio: regex recognisers + spaCy NER) and reversible redaction.

Presidio's analyzer takes seconds to build, so one instance serves the whole process.
Its e-mail/URL recognisers call tldextract, which by default downloads the public suffix
list: `tldextract_offline` replaces tldextract's module-level extractor with one that
uses only the snapshot bundled in the wheel, before any analysis runs.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from django.conf import settings

from app.identity import Tier
from broker.types import CompletionRequest

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine
    from spacy.language import Language
    from spacy.tokens import Doc

_lock = threading.Lock()
_engine: AnalyzerEngine | None = None


def tldextract_offline() -> None:
    """Make every tldextract lookup use the bundled public suffix snapshot, never HTTP."""
    import tldextract.tldextract as tld

    if getattr(tld.TLD_EXTRACTOR, "_offline", False):
        return
    extractor = tld.TLDExtract(cache_dir=None, suffix_list_urls=(), fallback_to_snapshot=True)
    extractor._offline = True  # type: ignore[attr-defined]
    tld.TLD_EXTRACTOR = extractor


_NON_PII_LABELS = [
    "CARDINAL", "EVENT", "LANGUAGE", "LAW", "MONEY", "ORDINAL", "PERCENT", "PRODUCT",
    "QUANTITY", "WORK_OF_ART", "FAC",
]  # fmt: skip


_LOWER_CASE_LEMMAS = "lower_case_lemmas"


def ner_only(model: Language) -> None:
    """Run only what the recognisers read: the entities, and the lemmas that Presidio's
    context enhancer looks for around a match ("phone", "account", "passport").

    In spaCy's small English pipeline the NER has its own embedding layer, so the shared
    tok2vec, the tagger, the parser, the attribute ruler and the lemmatizer (which needs
    the tagger) are work no recogniser uses: about two thirds of the time per text. A
    pipeline whose NER listens to a shared layer (a transformer) keeps that layer. The
    lemma becomes the lower-cased word: the enhancer matches a context word as a
    substring of the lemma, so "phones" and "called" still match "phone" and "call"."""
    keep = {"ner"} | {
        name for name, pipe in model.pipeline if "ner" in getattr(pipe, "listening_components", ())
    }
    for name in model.pipe_names:
        if name not in keep:
            model.disable_pipe(name)
    _register_lower_case_lemmas()
    if _LOWER_CASE_LEMMAS not in model.pipe_names:
        model.add_pipe(_LOWER_CASE_LEMMAS, last=True)


def _register_lower_case_lemmas() -> None:
    from spacy.language import Language

    if not Language.has_factory(_LOWER_CASE_LEMMAS):

        @Language.component(_LOWER_CASE_LEMMAS)
        def lower_case_lemmas(doc: Doc) -> Doc:
            for token in doc:
                token.lemma_ = token.lower_
            return doc


def multiply_on_numpy_blas(model: Language) -> None:
    """Every layer of the pipeline's models multiplies matrices with numpy's own BLAS
    (OpenBLAS) instead of BLIS, as thinc's `to_cpu` moves a model's layers to other ops. The
    parameters are numpy arrays either way. The NER is a quarter faster here, with the same
    entities on every corpus line (docs/BENCHMARKS.md, "PII detection on numpy's BLAS")."""
    from thinc.api import NumpyOps

    ops = NumpyOps(use_blis=False)
    for _name, pipe in model.pipeline:
        if hasattr(pipe, "model"):
            for layer in pipe.model.walk():
                layer.ops = ops


def limit_blas_threads(threads: int) -> None:
    """Run every BLAS library loaded in this process (numpy's, scipy's) on `threads`
    threads (`BLAS_THREADS`)."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=threads, user_api="blas")


def analyzer() -> AnalyzerEngine:
    """The process's Presidio analyzer (built on first use)."""
    global _engine
    with _lock:
        if _engine is None:
            # Presidio logs the analysed text (and its context words) at DEBUG: never let
            # that reach a log handler.
            logging.getLogger("presidio-analyzer").setLevel(logging.WARNING)
            tldextract_offline()
            from presidio_analyzer import AnalyzerEngine
            from presidio_analyzer.nlp_engine import NlpEngineProvider

            from orchestration.pii_recognizers import (
                NameGazetteerRecognizer,
                street_address_recognizer,
            )

            nlp = NlpEngineProvider(
                nlp_configuration={
                    "nlp_engine_name": "spacy",
                    "models": [{"lang_code": "en", "model_name": settings.PII_SPACY_MODEL}],
                    # spaCy labels that are not PII: ignored, instead of a warning per call.
                    "ner_model_configuration": {"labels_to_ignore": _NON_PII_LABELS},
                }
            ).create_engine()
            for model in nlp.nlp.values():  # type: ignore[attr-defined]
                ner_only(model)
                multiply_on_numpy_blas(model)
            limit_blas_threads(settings.BLAS_THREADS)
            _engine = AnalyzerEngine(nlp_engine=nlp, supported_languages=["en"])
            _engine.registry.add_recognizer(street_address_recognizer())
            _engine.registry.add_recognizer(NameGazetteerRecognizer())
        return _engine


@dataclass(frozen=True, slots=True)
class PiiSpan:
    entity: str
    start: int
    end: int
    score: float


def find_pii(text: str) -> list[PiiSpan]:
    """PII spans in `text`; overlapping detections merge into one span (the entity of the
    earliest, longest one), so a partial match never leaves the rest of a value behind."""
    if not text.strip():
        return []
    results = analyzer().analyze(
        text=text,
        language="en",
        entities=list(settings.PII_ENTITIES),
        score_threshold=settings.PII_MIN_SCORE,
    )
    return merge_spans([PiiSpan(r.entity_type, r.start, r.end, r.score) for r in results])


def merge_spans(spans: list[PiiSpan]) -> list[PiiSpan]:
    """Overlapping spans become one (the entity of the earliest, longest), covering both."""
    kept: list[PiiSpan] = []
    for span in sorted(spans, key=lambda s: (s.start, -(s.end - s.start), -s.score)):
        if kept and span.start < kept[-1].end:
            if span.end > kept[-1].end:
                kept[-1] = replace(kept[-1], end=span.end)
            continue
        kept.append(span)
    return kept


def pii_entities(text: str) -> dict[str, int]:
    """Count per entity type (what may be audited: never the values)."""
    counts: dict[str, int] = {}
    for span in find_pii(text):
        counts[span.entity] = counts.get(span.entity, 0) + 1
    return counts


# Threads that run PII detection alongside the injection scan of the same turn.
_background = ThreadPoolExecutor(max_workers=4, thread_name_prefix="pii")


def pii_entities_in_background(text: str) -> Future[dict[str, int]]:
    """`pii_entities(text)` on a worker thread. The input guard starts it, runs the
    injection scan meanwhile and then waits. The two are independent, and the scan's
    embedding runs on ONNX Runtime, which releases the GIL while it computes (PyTorch did
    not, between kernels: with it this measured slower than running them in turn)."""
    return _background.submit(pii_entities, text)


_PLACEHOLDER_NAMES = {
    "EMAIL_ADDRESS": "EMAIL",
    "PHONE_NUMBER": "PHONE",
    "US_SSN": "SSN",
    "CREDIT_CARD": "CARD",
    "IBAN_CODE": "IBAN",
    "IP_ADDRESS": "IP",
    "STREET_ADDRESS": "ADDRESS",
}


class Pseudonymizer:
    """Replaces PII by typed placeholders (`<PERSON_1>`, `<EMAIL_1>`) consistently across
    several texts of one request; `restore` puts the originals back. The mapping lives only
    in this object, which lives only for one turn."""

    def __init__(self) -> None:
        self._by_value: dict[tuple[str, str], str] = {}
        self._by_placeholder: dict[str, str] = {}
        self._counters: dict[str, int] = {}

    def _placeholder(self, entity: str, value: str) -> str:
        key = (entity, value)
        if key not in self._by_value:
            name = _PLACEHOLDER_NAMES.get(entity, entity)
            self._counters[name] = self._counters.get(name, 0) + 1
            placeholder = f"<{name}_{self._counters[name]}>"
            self._by_value[key] = placeholder
            self._by_placeholder[placeholder] = value
        return self._by_value[key]

    def redact(self, text: str) -> str:
        out: list[str] = []
        position = 0
        for span in find_pii(text):
            out.append(text[position : span.start])
            out.append(self._placeholder(span.entity, text[span.start : span.end]))
            position = span.end
        out.append(text[position:])
        return "".join(out)

    def restore(self, text: str) -> str:
        if not self._by_placeholder:
            return text
        pattern = re.compile("|".join(re.escape(p) for p in self._by_placeholder))
        return pattern.sub(lambda m: self._by_placeholder[m.group()], text)

    def __repr__(self) -> str:  # never show the mapping, even in a traceback
        return f"<Pseudonymizer placeholders={len(self._by_placeholder)}>"


def presidio_redactor(
    request: CompletionRequest,
) -> tuple[CompletionRequest, Callable[[str], str]]:
    """The broker's `PiiRedactor`: PII in the user message, the context passages and any
    tool rounds (the model's text, the call arguments echoed back, the results) becomes
    typed placeholders, in that order, so a placeholder the model used in round one means
    the same value in round two; the returned function restores them in the output."""
    pseudonymizer = Pseudonymizer()
    redact = pseudonymizer.redact
    redacted = replace(
        request,
        user_message=redact(request.user_message),
        system=redact(request.system),
        context=tuple(replace(c, text=redact(c.text)) for c in request.context),
        tool_rounds=tuple(
            replace(
                r,
                text=redact(r.text),
                calls=tuple(
                    replace(c, wire_arguments=redact(c.wire_arguments or c.arguments))
                    for c in r.calls
                ),
                outcomes=tuple(replace(o, content=redact(o.content)) for o in r.outcomes),
            )
            for r in request.tool_rounds
        ),
        redactor=None,
    )
    return redacted, pseudonymizer.restore


# PII kinds that make a document restricted; any other PII makes it at least confidential.
_RESTRICTED_PII = frozenset({"CREDIT_CARD", "US_SSN", "IBAN_CODE", "US_BANK_NUMBER", "US_PASSPORT"})


def suggest_tier(pii_kinds: dict[str, int]) -> Tier | None:
    """The tier a document's PII suggests: the same rule as for a chat turn (any PII is at
    least confidential), with financial and government identifiers restricted."""
    if not pii_kinds:
        return None
    return Tier.RESTRICTED if _RESTRICTED_PII & pii_kinds.keys() else Tier.CONFIDENTIAL
