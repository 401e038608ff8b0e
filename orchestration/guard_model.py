"""The learned detector: a logistic regression over MiniLM embeddings and character and word
n-grams, fit from the labelled corpus the project ships (`data/classifier/`).

The similarity layer asks "is this text close to one known attack?"; this one learns which
directions of the embedding space, and which character sequences, separate attacks from
ordinary questions across many examples, so it generalises to phrasings no library line
has. Character n-grams carry what MiniLM (an English model) misses: attacks written in
other languages, and spelling games.

No weights are stored: the model is fit when first needed in a process (under a second),
from the corpus in the repository, deterministically. So the weights can never drift from
the data they claim to come from, and there is no pickled model to trust. The corpus's
MiniLM embeddings ship beside it (`embeddings.npy`, plain float32, loaded without pickle)
because computing them takes seconds; they are used only when `embeddings.digest` matches
the corpus texts and the pinned model, otherwise they are recomputed (and a test fails until
`make guard-embeddings` refreshes them). They are full-precision vectors, which come out the
same on every CPU; the quantised ones the guards compute at run time differ a little from one
instruction set to another, so shipped quantised vectors would match only the machine that
wrote them. The evaluation sets under bench/data/guards/ are
never part of the fit (`make bench-guards` refuses to run if they overlap). Besides the corpus,
the fit reads `SUPPLEMENTS`: smaller batches at a lower sample weight.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from app.logs import get_logger

log = get_logger("orchestration.guard_model")
CORPUS = Path(__file__).parent / "data" / "classifier"
EMBEDDINGS = CORPUS / "embeddings.npy"
EMBEDDINGS_DIGEST = CORPUS / "embeddings.digest"
# Fixed at fit time. The n-grams and the embedding weight were chosen by cross-validation
# on the training corpus only. C (inverse regularisation) was chosen on the blind splits 2-5,
# already seen, through the full scan at the deployed thresholds: 8 -> 16 -> 32 detected
# 95.0% -> 95.6% -> 96.7% of their attacks with the same benign blocked. 32 was judged on
# held-out 6, then unseen: 92.0% (8: 90.0%); but it pushes three benign lines of the
# in-sample and first held-out splits over the block threshold, and 16 detects the same
# 92.0% of held-out 6 without them. Larger C makes the scores more extreme: the block
# threshold (then 0.92) was set for a more regularised model.
NGRAMS = (2, 5)  # character n-grams
WORD_NGRAMS = (1, 2)
EMBEDDING_WEIGHT = 0.5  # the embedding block's scale against the unit-norm n-gram block
C = 16.0
# Batches that teach a contrast the corpus lacks, fit at a lower sample weight (their n-grams
# join the vocabulary: MiniLM reads English only, so for a line in another language its
# character n-grams are all the detector has). "decoding": questions that ask to decode or
# explain an encoded value, against decode-and-obey attacks. "harm_requests": requests for
# harm that attack no instruction (a harmless task turning into fake reviews, payment fraud,
# phishing, forged documents, control evasion, covert data theft, harm in a story or
# persona), against the same subjects asked about in good faith (docs/BENCHMARKS.md, parts
# AC-AD). "personas_languages": harm asked of a persona, and harm requests and injections in
# 42 other languages, against sign-off questions, legitimate role-play and ordinary
# questions in the same languages (parts AE and AJ: adopted on held-out 52-54, 411 -> 415
# of 428 attacks detected, benign blocked 3 -> 4 of 413). "software_purposes": everyday
# software questions carrying a harmful purpose the user states (edit my own salary so the
# history doesn't show it, copy a manager's mailbox while she's at lunch), against the same
# questions asked properly. "pasted_documents": business documents pasted for ordinary work
# on them (close notes, runbooks, configs, minutes, red-team write-ups) whose imperatives
# address their human readers, against the same kinds of document carrying a note to the
# assistant or put to a harmful use. The first raises scores, the second lowers those of
# long pastes; together they keep the blocks of attacks and lower those of benign pastes
# (part AM). "frames": harm asked through a story, a thought experiment, a persona, a game or
# a harmless task that pivots, and short requests for harm in other languages, against dark
# fiction without a method, training role-play, thought experiments, playful personas and
# harmless multi-step tasks (part AP). "pretexts": harm asked of an insider persona, through a
# made-up transcript to continue, a writing task that turns into fraud or a smear, a frame
# asking for the exact specifics, a routine-sounding request, or briefly in a less-seen
# language, against red-team report excerpts, guard-log triage, pasted ticket threads,
# honest insider voices and writing tasks (part AU; 0.6 moved more on the spent splits than
# 0.3, with benign blocks falling in both). "scenarios_overrides": thought experiments and
# training scenarios that need the real method, personas asked for confidential data, quiet
# overrides of one rule, instructions hidden in pasted material, refusals forbidden in
# advance, claimed earlier agreement, against their honest neighbours (part AV; at 0.6 it
# added benign blocks on the spent splits without more detections than at 0.3).
SUPPLEMENTS: dict[str, float] = {
    "decoding": 0.3,
    "harm_requests": 0.3,
    "personas_languages": 0.3,
    "software_purposes": 0.3,
    "pasted_documents": 0.1,
    "frames": 0.3,
    "pretexts": 0.6,
    "scenarios_overrides": 0.3,
}
SUPPLEMENT_DIR = CORPUS / "supplements"
# Supplements whose benign lines are also fit as the pieces the scan scores
# (`injection.segments`), at the supplement's weight: a long input is judged by its most
# suspicious window of 48 words, not as a whole, so a benign document has to be benign in
# its windows too. An attack line's windows are not added: most of them hold only the
# document, not the note or request that makes the line an attack.
PIECEWISE = frozenset({"pasted_documents"})

_lock = threading.Lock()
_model: GuardModel | None = None


@dataclass(frozen=True, slots=True)
class Example:
    text: str
    attack: bool
    family: str
    lang: str


def load_corpus(directory: Path = CORPUS) -> list[Example]:
    rows = []
    for name in ("attacks.jsonl", "benign.jsonl"):
        for line in (directory / name).read_text(encoding="utf-8").splitlines():
            if line.strip():
                item = json.loads(line)
                rows.append(
                    Example(
                        item["text"],
                        item["label"] == "attack",
                        item.get("family", ""),
                        item.get("lang", ""),
                    )
                )
    return rows


@dataclass(frozen=True, slots=True)
class TrainingSet:
    """What the detector is fit on: the corpus's examples, then the supplements'."""

    examples: list[Example]
    weights: np.ndarray  # one sample weight per example
    corpus_size: int  # the first `corpus_size` examples are the corpus

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.examples]

    @property
    def labels(self) -> list[bool]:
        return [e.attack for e in self.examples]


def training_set(supplements: dict[str, float] | None = None) -> TrainingSet:
    """The corpus, then each supplement (`SUPPLEMENTS` unless given) at its weight."""
    corpus = load_corpus()
    examples, weights = list(corpus), [1.0] * len(corpus)
    for name, weight in (SUPPLEMENTS if supplements is None else supplements).items():
        if not 0.0 < weight <= 1.0:
            raise ValueError(f"supplement {name!r}: weight {weight} is not in (0, 1]")
        rows = load_corpus(SUPPLEMENT_DIR / name)
        if name in PIECEWISE:
            rows += benign_pieces(rows)
        examples += rows
        weights += [weight] * len(rows)
    return TrainingSet(examples, np.asarray(weights), len(corpus))


def benign_pieces(rows: Sequence[Example], min_words: int = 5) -> list[Example]:
    """The windows the scan would score of `rows`' benign lines (`injection.segments`), each
    once, leaving out those equal to a line and those under `min_words` words."""
    from orchestration.injection import segments

    seen = {row.text for row in rows}
    pieces = []
    for row in rows:
        if row.attack:
            continue
        for piece in segments(row.text):
            if piece not in seen and len(piece.split()) >= min_words:
                seen.add(piece)
                pieces.append(Example(piece, False, row.family, row.lang))
    return pieces


def fit_training_set(training: TrainingSet, vectors: np.ndarray) -> GuardModel:
    """`fit` on a training set, at its sample weights."""
    return fit(training.texts, training.labels, vectors, sample_weight=training.weights)


@dataclass(frozen=True, slots=True)
class GuardModel:
    vectorizers: tuple[Any, ...]  # sklearn TfidfVectorizers: character and word n-grams
    classifier: Any  # sklearn LogisticRegression
    embedding_weight: float

    def blocks(self, texts: Sequence[str], vectors: np.ndarray) -> list[Any]:
        """The feature blocks, in the regression's column order: the scaled embeddings
        (dense), then each vectoriser's n-grams (sparse)."""
        dense = np.asarray(vectors, dtype=np.float64) * self.embedding_weight
        return [dense, *self._ngram_blocks(texts)]

    def _ngram_blocks(self, texts: Sequence[str]) -> list[Any]:
        lowered = [t.lower() for t in texts]
        return [v.transform(lowered) for v in self.vectorizers]

    def features(self, texts: Sequence[str], vectors: np.ndarray) -> Any:
        from scipy.sparse import csr_matrix, hstack

        dense, *sparse = self.blocks(texts, vectors)
        return hstack([csr_matrix(dense), *sparse], format="csr")

    def text_logits(self, texts: Sequence[str]) -> np.ndarray:
        """Per text, the regression's intercept plus its n-gram terms: the learned score's
        logit without the embedding's part, so without running the transformer."""
        weights = self.classifier.coef_[0]
        logits = np.full(len(texts), float(self.classifier.intercept_[0]))
        if not texts:
            return logits
        offset = weights.size - sum(len(v.vocabulary_) for v in self.vectorizers)
        for block in self._ngram_blocks(texts):
            logits += block @ weights[offset : offset + block.shape[1]]
            offset += block.shape[1]
        return logits

    def probabilities(
        self, texts: Sequence[str], vectors: np.ndarray, text_logits: np.ndarray | None = None
    ) -> np.ndarray:
        """P(attack) per text; `vectors` are the texts' unit MiniLM embeddings, and
        `text_logits` their `text_logits` when already computed.

        The regression's own formula, sigmoid(w.x + b), summed block by block: the same
        result as `classifier.predict_proba(self.features(...))` without building the
        stacked sparse matrix, which took about a quarter of the step."""
        if not texts:
            return np.zeros(0)
        if text_logits is None:
            text_logits = self.text_logits(texts)
        dense = np.asarray(vectors, dtype=np.float64) * self.embedding_weight
        logits = text_logits + dense @ self.classifier.coef_[0][: dense.shape[1]]
        return np.asarray(1.0 / (1.0 + np.exp(-logits)))


def most_suspicious(text_logits: np.ndarray, k: int, floor: float | None = None) -> list[int]:
    """The indices of the pieces worth the transformer, in ascending order: the `k`
    highest n-gram logits, and every piece whose logit reaches `floor` (every index when
    `k` < 1 or there are no more than `k`). The n-grams are the learned model's own, so a
    piece they rank low would need its embedding alone to lift it over a flag threshold.

    The floor makes a piece's place in the set its own business: decoy pieces that rank
    higher cannot push an instruction whose n-grams reach the floor out of it."""
    if k < 1 or len(text_logits) <= k:
        return list(range(len(text_logits)))
    chosen = {int(i) for i in np.argsort(-text_logits, kind="stable")[:k]}
    if floor is not None:
        chosen.update(int(i) for i in np.flatnonzero(text_logits >= floor))
    return sorted(chosen)


def fit(
    texts: Sequence[str],
    labels: Sequence[bool],
    vectors: np.ndarray,
    *,
    ngrams: tuple[int, int] = NGRAMS,
    embedding_weight: float = EMBEDDING_WEIGHT,
    c: float = C,
    sample_weight: np.ndarray | None = None,
) -> GuardModel:
    """Fit the vectoriser and the regression (deterministic: same data, same weights).

    `sample_weight`: each text's weight in the regression (1 when not given); the n-gram
    vocabulary and IDF come from every text whatever its weight."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    lowered = [t.lower() for t in texts]
    characters = TfidfVectorizer(
        analyzer="char_wb", ngram_range=ngrams, min_df=2, sublinear_tf=True, dtype=np.float64
    )
    # Words and word pairs ("hidden rules", "no restrictions") add what spans more than
    # five characters; +2.6 points of recall at a 2% false-positive rate in cross-validation.
    words = TfidfVectorizer(
        analyzer="word", ngram_range=WORD_NGRAMS, min_df=2, sublinear_tf=True, dtype=np.float64
    )
    vectorizers = (characters.fit(lowered), words.fit(lowered))
    # Fit to convergence: at scikit-learn's default tolerance (1e-4) L-BFGS stopped after 21
    # iterations, 11% (relative) from the optimum in its coefficients, and two training lines
    # more or less moved twice as many decisions as at the optimum. At 1e-6 (about 75
    # iterations) no decision on held-out 72-78 differs from a fit at 1e-8. The learned block
    # threshold moved with it (docs/BENCHMARKS.md, parts AR and AS).
    classifier = LogisticRegression(C=c, class_weight="balanced", max_iter=5000, tol=1e-6)
    model = GuardModel(vectorizers, classifier, embedding_weight)
    classifier.fit(
        model.features(texts, vectors), np.asarray(labels, dtype=bool), sample_weight=sample_weight
    )
    return model


def corpus_digest(texts: Sequence[str]) -> str:
    """What the shipped embeddings were computed from: the pinned model, the number of its
    layers the guards keep, full precision, and every text."""
    from django.conf import settings

    digest = hashlib.sha256(settings.EMBEDDING_MODEL_SHA256.encode())
    digest.update(f"\0layers={settings.GUARD_EMBEDDING_LAYERS}\0fp32".encode())
    for text in texts:
        digest.update(b"\0" + text.encode("utf-8"))
    return digest.hexdigest()


def embed_corpus(texts: Sequence[str]) -> np.ndarray:
    """Full-precision unit embeddings from the guards' layers of the model, on ONNX Runtime
    whatever the number of texts."""
    from broker.embeddings import guard_encoder

    return guard_encoder(int8=False).encode(list(texts))


def corpus_embeddings(texts: Sequence[str]) -> np.ndarray:
    """The shipped embeddings when they match `texts` (the training set's) and the model,
    else fresh ones."""
    from broker.embeddings import EMBEDDING_DIM

    if EMBEDDINGS_DIGEST.is_file() and EMBEDDINGS.is_file():
        if EMBEDDINGS_DIGEST.read_text().strip() == corpus_digest(texts):
            vectors = np.load(EMBEDDINGS, allow_pickle=False)
            if vectors.shape == (len(texts), EMBEDDING_DIM) and vectors.dtype == np.float32:
                return vectors
    log.warning("guard_corpus_embeddings_stale", hint="make guard-embeddings")
    return embed_corpus(texts)


def write_corpus_embeddings() -> Path:
    """Recompute the training set's embeddings and their digest (`make guard-embeddings`)."""
    texts = training_set().texts
    np.save(EMBEDDINGS, embed_corpus(texts), allow_pickle=False)
    EMBEDDINGS_DIGEST.write_text(corpus_digest(texts) + "\n")
    return EMBEDDINGS


def guard_model() -> GuardModel:
    """The process's model, fit from the shipped corpus on first use."""
    global _model
    with _lock:
        if _model is None:
            training = training_set()
            _model = fit_training_set(training, corpus_embeddings(training.texts))
        return _model


if __name__ == "__main__":
    import os

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings.dev")
    django.setup()
    print(f"wrote {write_corpus_embeddings()}")
