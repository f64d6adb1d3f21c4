"""Loading sentence-transformers models and embedding texts with them, with NIM's input_type/truncate semantics.

torch and sentence-transformers are imported lazily (heavy): the platform starts fast and only pays for them
once a model is deployed.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import gc
import threading
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import MalformedRequestError
from .inference_backend import requested_backend
from .runtime_calibration import resolve_runtime
from .runtime_choice import RuntimeCalibrations, RuntimeChoice, machine_calibrations_dir

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

# Input types of the NIM embedding API, and the prompt names sentence-transformers models use for them.
INPUT_TYPE_PROMPTS = {"query": ("query",), "passage": ("passage", "document", "corpus")}


class ModelInputError(MalformedRequestError):
    """An embedding request the model cannot serve (too long with truncate=NONE, bad input_type, ...)."""


_MODEL_CACHE_SIZE = 4
_model_cache: "OrderedDict[tuple[str, str, str], SentenceTransformer]" = OrderedDict()
_model_cache_lock = threading.Lock()
# Which runtime computes each cached model, and why (by id of the model).
_runtime_choices: dict[int, RuntimeChoice] = {}
# Fast tokenizers are not safe for concurrent use ("Already borrowed"): one encode at a time per model.
_encode_locks: dict[int, threading.Lock] = {}


def default_device() -> str:
    import torch  # lazy: heavy, and only needed once a model is loaded

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_model(
    path: Path | str, device: str | None = None, calibrations: RuntimeCalibrations | None = None
) -> "SentenceTransformer":
    """Load a sentence-transformers folder once per (path, device, runtime setting); keeps the last few models in
    memory. The runtime setting (``EMBED_FT_INFERENCE_BACKEND``, default ``auto``) picks what computes the
    transformer (``inference_backend.py``); ``auto`` calibrates once and caches the choice in ``calibrations``
    (the platform home's). ``runtime_choice(model)`` says which runtime runs and why."""
    from sentence_transformers import SentenceTransformer  # lazy: heavy

    device = device or default_device()
    key = (str(Path(path).resolve()), device, requested_backend())
    with _model_cache_lock:
        if key in _model_cache:
            _model_cache.move_to_end(key)
            return _model_cache[key]

    def fresh() -> "SentenceTransformer":
        return SentenceTransformer(key[0], device=device, local_files_only=True).eval()

    calibrations = calibrations or RuntimeCalibrations(None, machine_calibrations_dir())
    model, choice = resolve_runtime(key[2], Path(key[0]), device, fresh, calibrations)
    with _model_cache_lock:
        model = _model_cache.setdefault(key, model)
        _encode_locks.setdefault(id(model), threading.Lock())
        _runtime_choices.setdefault(id(model), choice)
        while len(_model_cache) > _MODEL_CACHE_SIZE:
            _, evicted = _model_cache.popitem(last=False)
            _encode_locks.pop(id(evicted), None)
            _runtime_choices.pop(id(evicted), None)
    return model


def runtime_choice(model: "SentenceTransformer") -> RuntimeChoice | None:
    """The runtime computing a model loaded by ``load_model``, and why (None for a model loaded elsewhere)."""
    with _model_cache_lock:
        return _runtime_choices.get(id(model))


def unload_model(path: Path | str) -> None:
    """Drop every cached copy of the model at ``path`` (undeploy), and give the freed memory back to the system."""
    resolved = str(Path(path).resolve())
    with _model_cache_lock:
        for key in [k for k in _model_cache if k[0] == resolved]:
            model = _model_cache.pop(key)
            _encode_locks.pop(id(model), None)
            _runtime_choices.pop(id(model), None)
    release_memory()


def release_memory() -> None:
    """Collect the model's reference cycles (torch modules hold some), then return free heap pages to the system:
    glibc keeps freed memory of the loader threads' arenas otherwise, and RSS only ever grew with each
    deploy/undeploy cycle (issue 24, F5; figures in BENCHMARKS.md)."""
    gc.collect()
    if _libc is not None:
        _libc.malloc_trim(0)


def _load_libc() -> "ctypes.CDLL | None":
    """glibc, where ``malloc_trim`` exists (Linux); None elsewhere (musl, macOS: nothing to trim there)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc if hasattr(libc, "malloc_trim") else None
    except OSError:
        return None


_libc = _load_libc()


def embedding_dimension(model: "SentenceTransformer") -> int:
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dimension = getter()
    if dimension is None:
        raise ModelInputError("the model does not say its embedding dimension")
    return int(dimension)


def max_seq_length(model: "SentenceTransformer") -> int:
    """The model's input limit in tokens (sentence-transformers types it as optional; served models all set it)."""
    if model.max_seq_length is None:
        raise ModelInputError("the model does not say its maximum sequence length")
    return int(model.max_seq_length)


def prompt_name_for(model: "SentenceTransformer", input_type: str | None) -> str | None:
    """The model's own prompt for a NIM input_type, or None (encode the text as-is)."""
    if input_type is None:
        return None
    if input_type not in INPUT_TYPE_PROMPTS:
        raise ModelInputError(f"input_type must be 'query' or 'passage', got {input_type!r}")
    prompts = getattr(model, "prompts", None) or {}
    return next((name for name in INPUT_TYPE_PROMPTS[input_type] if name in prompts), None)


def _truncate_texts(model: "SentenceTransformer", texts: list[str], truncate: str, first_index: int = 0) -> list[str]:
    """NIM truncate semantics: END (cut the end: the model's own behaviour), START (keep the end), NONE (refuse)."""
    if truncate == "END":
        return texts
    tokenizer = model.tokenizer
    limit = max_seq_length(model) - 2  # [CLS] and [SEP]
    ids = tokenizer(texts, add_special_tokens=False, truncation=False)["input_ids"]
    out = []
    for index, (text, token_ids) in enumerate(zip(texts, ids, strict=True)):
        if len(token_ids) <= limit:
            out.append(text)
        elif truncate == "NONE":
            raise ModelInputError(
                f"input[{first_index + index}] has {len(token_ids)} tokens, more than the model's maximum of {limit} "
                "(truncate is NONE; use END or START to truncate)"
            )
        else:
            out.append(tokenizer.decode(token_ids[-limit:]))
    return out


def count_tokens(model: "SentenceTransformer", texts: list[str]) -> int:
    """Tokens the model actually reads (special tokens included, after truncation to max_seq_length)."""
    # Under the model's encode lock: a fast tokenizer is not thread-safe (concurrent calls that set truncation
    # raise "Already borrowed"); Helix's concurrent embedding requests got 500s from this race.
    with _encode_locks.setdefault(id(model), threading.Lock()):
        ids = model.tokenizer(texts, truncation=True, max_length=max_seq_length(model))["input_ids"]
    return sum(len(x) for x in ids)


def embed(
    model: "SentenceTransformer",
    texts: list[str],
    input_type: str | None = None,
    truncate: str = "END",
    batch_size: int = 32,
    show_progress_bar: bool = False,
    first_index: int = 0,
) -> np.ndarray:
    """Embed ``texts`` -> float32 array (n, dim). Uses the model's query/passage prompt when it defines one.
    ``first_index``: the index of ``texts[0]`` in the request (errors name ``input[i]`` of the request).

    Normalisation is the model's business: a model with a Normalize module returns unit vectors, others not.
    """
    truncate = (truncate or "END").upper()
    if truncate not in ("NONE", "START", "END"):
        raise ModelInputError(f"truncate must be NONE, START or END, got {truncate!r}")
    prompt_name = prompt_name_for(model, input_type)
    lock = _encode_locks.setdefault(id(model), threading.Lock())
    with lock:
        texts = _truncate_texts(model, list(texts), truncate, first_index)
        if not texts:
            return np.zeros((0, embedding_dimension(model)), dtype=np.float32)
        vectors = model.encode(
            texts,
            prompt_name=prompt_name,
            batch_size=batch_size,
            convert_to_numpy=True,
            normalize_embeddings=False,
            show_progress_bar=show_progress_bar,
        )
    return np.asarray(vectors, dtype=np.float32)


def encode_base64(vector: np.ndarray) -> str:
    """NIM ``encoding_format: base64``: base64 of the little-endian float32 bytes."""
    return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
