"""Which runtime computes a served model's transformer: PyTorch, or ONNX Runtime on a CPU.

``EMBED_FT_INFERENCE_BACKEND``: ``torch`` (the default: exact fidelity with sentence-transformers/BEIR), ``onnx``
(ONNX Runtime; an error if it is not installed or the model cannot be exported) or ``auto`` (ONNX Runtime on a CPU
when ``onnxruntime`` is installed and the model exports, else torch; CUDA always stays on torch). torch is the
default because on the machines measured so far (Intel Xeon with AVX-512/AMX, torch 2.13) ONNX Runtime's fp32
kernels were slower than torch's (BENCHMARKS.md, "Inference backends"); ``auto`` is for CPUs where they are not.

The ONNX graph is exported locally from the model's own weights (``torch.onnx.export`` of its Hugging Face
transformer, then ONNX Runtime's BERT fusions) into ``<cache>/<weights fingerprint>/model.onnx``
(``EMBED_FT_ONNX_CACHE``, default ``~/.cache/embed_ft/onnx``), once per set of weights. Only the transformer
forward pass moves: tokenization, length-sorted batching, prompts, pooling and normalization stay
sentence-transformers' own, so the vectors differ from the torch path by float rounding only (~1e-7 after
normalization; `bench/bench_inference_backends.py` records the time and metric differences).

sentence-transformers' own ``backend="onnx"`` needs ``optimum-onnx``, which pins transformers < 4.58 (this project
runs transformers 5): the export here needs only ``onnx`` and ``onnxruntime`` and leaves torch and transformers as
they are.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model_weights import model_fingerprint

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

log = logging.getLogger("embed_ft.platform.inference")

BACKEND_ENV = "EMBED_FT_INFERENCE_BACKEND"
ONNX_CACHE_ENV = "EMBED_FT_ONNX_CACHE"
BACKENDS = ("torch", "onnx", "auto")
DEFAULT_BACKEND = "torch"
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
_export_lock = threading.Lock()


class InferenceBackendError(RuntimeError):
    """``onnx`` was asked for and cannot be had (not installed, or the model does not export)."""


def requested_backend() -> str:
    value = (os.environ.get(BACKEND_ENV) or DEFAULT_BACKEND).strip().lower()
    if value not in BACKENDS:
        raise InferenceBackendError(f"{BACKEND_ENV} must be one of {', '.join(BACKENDS)}, got {value!r}")
    return value


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401  (lazy: optional dependency, extra [onnx])
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_cache_root() -> Path:
    return Path(os.environ.get(ONNX_CACHE_ENV) or Path.home() / ".cache" / "embed_ft" / "onnx").expanduser()


def backend_of(model: "SentenceTransformer") -> str:
    """``onnx`` when the model's transformer runs on ONNX Runtime, else ``torch``."""
    return "onnx" if getattr(model[0].model, "is_onnx", False) else "torch"


def apply_backend(model: "SentenceTransformer", path: str | Path, device: str, backend: str | None = None) -> "SentenceTransformer":
    """Move ``model``'s transformer onto the chosen runtime (in place) and return the model."""
    backend = backend or requested_backend()
    if backend not in BACKENDS:
        raise InferenceBackendError(f"inference backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if backend == "torch" or (backend == "auto" and (device != "cpu" or not onnx_available())):
        return model
    if backend == "onnx" and not onnx_available():
        raise InferenceBackendError("inference backend 'onnx' needs onnx and onnxruntime: pip install 'embed-ft[onnx]'")
    try:
        onnx_path = export_onnx(model, Path(path))
        transformer: Any = model[0]  # sentence-transformers' Transformer module (typed as a plain Module)
        transformer.model = _onnx_module(transformer.model.config, onnx_path)
    except Exception as exc:  # noqa: BLE001  (auto falls back to torch; onnx says why it cannot)
        if backend == "onnx":
            raise InferenceBackendError(f"cannot run {path} on ONNX Runtime: {type(exc).__name__}: {exc}") from exc
        log.warning("model %s stays on torch: ONNX export failed (%s: %s)", path, type(exc).__name__, exc)
    return model


def export_onnx(model: "SentenceTransformer", path: Path) -> Path:
    """The model's transformer as a fused ONNX graph in the cache (exported on first use)."""
    import torch  # lazy: heavy

    target = onnx_cache_root() / model_fingerprint(path) / "model.onnx"
    with _export_lock:
        if target.is_file():
            return target
        first: Any = model[0]  # sentence-transformers' Transformer module (typed as a plain Module)
        transformer = first.model
        if type(transformer).__name__.startswith("Peft"):
            raise ValueError("adapter models are served by torch")
        target.parent.mkdir(parents=True, exist_ok=True)
        raw = target.with_name(f".raw-{os.getpid()}.onnx")
        sample = first.tokenizer(["an example", "a second, longer example"], return_tensors="pt", padding=True)
        inputs = tuple(sample.get(name, torch.zeros_like(sample["input_ids"])) for name in ONNX_INPUTS)
        axes = {name: {0: "batch", 1: "sequence"} for name in (*ONNX_INPUTS, "last_hidden_state")}
        with torch.no_grad():
            torch.onnx.export(_export_wrapper(transformer).eval(), inputs, str(raw), input_names=list(ONNX_INPUTS),
                              output_names=["last_hidden_state"], dynamic_axes=axes, opset_version=OPSET,
                              dynamo=False)
        fused = target.with_name(f".fused-{os.getpid()}.onnx")
        _fuse(raw, fused, transformer.config)
        raw.unlink(missing_ok=True)
        os.replace(fused, target)
        return target


def _fuse(source: Path, out: Path, config: Any) -> None:
    """ONNX Runtime's BERT graph fusions (SkipLayerNorm, BiasGelu, ...): fewer kernels, same math."""
    from onnxruntime.transformers import optimizer  # lazy: optional dependency

    fused = optimizer.optimize_model(str(source), model_type="bert", num_heads=int(config.num_attention_heads),
                                     hidden_size=int(config.hidden_size), opt_level=1)
    fused.save_model_to_file(str(out))


def _export_wrapper(transformer: Any) -> Any:
    """The module exported: positional inputs in, ``last_hidden_state`` out."""
    import torch  # lazy: heavy

    class HiddenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.transformer(input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids,
                                    return_dict=True).last_hidden_state

    return HiddenStates()


def _onnx_module(config: Any, onnx_path: Path) -> Any:
    """A torch module standing where the Hugging Face model was: sentence-transformers calls it with the tokenized
    batch and reads ``last_hidden_state``; ONNX Runtime computes it."""
    import onnxruntime as ort  # lazy: optional dependency
    import torch  # lazy: heavy

    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()  # the same thread budget as the torch path
    options.inter_op_num_threads = 1
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")  # shared CPUs: no busy-waiting
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])

    class OnnxTransformer(torch.nn.Module):
        is_onnx = True

        def __init__(self) -> None:
            super().__init__()
            self.config = config
            # sentence-transformers reads the device from the parameters: one empty CPU tensor says "cpu".
            self.anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)

        def forward(self, input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None,
                    **_: Any) -> dict[str, Any]:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            feeds = {"input_ids": input_ids.cpu().numpy(), "attention_mask": attention_mask.cpu().numpy(),
                     "token_type_ids": token_type_ids.cpu().numpy()}
            (hidden,) = session.run(["last_hidden_state"], feeds)
            return {"last_hidden_state": torch.from_numpy(hidden)}

    return OnnxTransformer()
