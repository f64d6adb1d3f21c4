"""Which runtime computes a served model's transformer: the one definition of the runtime names and the default.

``EMBED_FT_INFERENCE_BACKEND`` (``RUNTIME_ENV``) is one of ``runtime_names()``:

- ``auto`` (``DEFAULT_RUNTIME``): the fastest fp32 runtime of this machine whose embeddings equal torch fp32's
  within 1e-5, chosen by a calibration once per machine, model and runtime versions and cached in the platform home
  (``runtime_calibration.py``); torch wherever nothing beats it (CUDA: torch only).
- ``torch``: PyTorch fp32, BEIR's own computation (bit-identical rankings); one setting away for BEIR-exact runs.
- ``onnx``: ONNX Runtime fp32 on a CPU (an error if the model cannot be exported).
- ``torch-bf16``: opt-in, torch under bf16 autocast where the hardware has native bf16; faster, not exact: its
  deviation from torch fp32, measured on the machine, is shown beside it.

Runtimes are ``Runtime`` objects in one registry (``register_runtime``): a runtime the project adopts (OpenVINO,
say) is one more class, and calibration tries every registered fp32 runtime.

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

import importlib.metadata
import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .model_weights import model_fingerprint

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

log = logging.getLogger("embed_ft.platform.inference")

RUNTIME_ENV = "EMBED_FT_INFERENCE_BACKEND"
BACKEND_ENV = RUNTIME_ENV  # the name earlier code and docs use
ONNX_CACHE_ENV = "EMBED_FT_ONNX_CACHE"
AUTO = "auto"
DEFAULT_RUNTIME = AUTO
DEFAULT_BACKEND = DEFAULT_RUNTIME
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17
_export_lock = threading.Lock()


class InferenceBackendError(RuntimeError):
    """A runtime was asked for and cannot be had (unknown name, not installed, or the model does not export)."""


class Runtime:
    """One way to compute a model's transformer. ``exact``: fp32, expected to equal torch fp32 within 1e-5 (only
    those are candidates of ``auto``)."""

    name = "torch"
    exact = True

    def available(self, device: str) -> bool:
        return True

    def version(self) -> str:
        return _version("torch")

    def apply(self, model: "SentenceTransformer", path: Path, device: str) -> "SentenceTransformer":
        return model


class OnnxRuntime(Runtime):
    name = "onnx"

    def available(self, device: str) -> bool:
        return device == "cpu" and onnx_available()

    def version(self) -> str:
        return f"onnxruntime {_version('onnxruntime')}"

    def apply(self, model: "SentenceTransformer", path: Path, device: str) -> "SentenceTransformer":
        if not onnx_available():
            raise InferenceBackendError("runtime 'onnx' needs onnx and onnxruntime: pip install onnx onnxruntime")
        try:
            transformer: Any = model[0].model
            model[0].model = _onnx_module(transformer.config, export_onnx(model, path))
        except Exception as exc:  # noqa: BLE001  (the caller says why the runtime cannot run this model)
            raise InferenceBackendError(f"cannot run {path} on ONNX Runtime: {type(exc).__name__}: {exc}") from exc
        return model


class TorchBf16Runtime(Runtime):
    """torch under bf16 autocast (matrix products in bf16, outputs back in fp32): opt-in, never chosen by auto."""

    name = "torch-bf16"
    exact = False

    def available(self, device: str) -> bool:
        return native_bf16(device)

    def version(self) -> str:
        return f"torch {_version('torch')} bf16"

    def apply(self, model: "SentenceTransformer", path: Path, device: str) -> "SentenceTransformer":
        model[0].model = _bf16_module(model[0].model, device)
        return model


_runtimes: dict[str, Runtime] = {}
_runtimes_lock = threading.Lock()


def register_runtime(runtime: Runtime) -> None:
    """Add (or replace) a runtime by its name; ``auto`` calibrates every registered exact runtime."""
    if runtime.name == AUTO:
        raise ValueError("'auto' is the setting that chooses a runtime, not a runtime")
    with _runtimes_lock:
        _runtimes[runtime.name] = runtime


def unregister_runtime(name: str) -> None:
    with _runtimes_lock:
        if name not in ("torch", "onnx", "torch-bf16"):
            _runtimes.pop(name, None)


def runtimes() -> dict[str, Runtime]:
    with _runtimes_lock:
        return dict(_runtimes)


def runtime_names() -> tuple[str, ...]:
    """Every value the runtime setting takes: ``auto`` first, then the registered runtimes."""
    return (AUTO, *runtimes())


for _builtin in (Runtime(), OnnxRuntime(), TorchBf16Runtime()):
    register_runtime(_builtin)


def checked_runtime(value: str | None) -> str:
    """A runtime setting, lower-cased and checked (``auto`` when empty)."""
    name = (value or DEFAULT_RUNTIME).strip().lower()
    if name not in runtime_names():
        raise InferenceBackendError(f"{RUNTIME_ENV} must be one of {', '.join(runtime_names())}, got {name!r}")
    return name


def requested_backend() -> str:
    """The runtime setting of this process (``EMBED_FT_INFERENCE_BACKEND``, default ``auto``)."""
    return checked_runtime(os.environ.get(RUNTIME_ENV))


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def native_bf16(device: str) -> bool:
    """bf16 computed natively: a CUDA GPU that supports it, or a CPU with AVX512-BF16/AMX (oneDNN's check)."""
    import torch  # lazy: heavy

    if device.startswith("cuda"):
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    mkldnn: Any = torch.backends.mkldnn  # untyped in torch's stubs
    return bool(mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())


def onnx_available() -> bool:
    try:
        import onnx  # noqa: F401  (lazy: heavy)
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def onnx_cache_root() -> Path:
    return Path(os.environ.get(ONNX_CACHE_ENV) or Path.home() / ".cache" / "embed_ft" / "onnx").expanduser()


def backend_of(model: "SentenceTransformer") -> str:
    """The runtime computing ``model``'s transformer (``torch`` unless a runtime replaced it)."""
    return str(getattr(model[0].model, "runtime_name", "torch"))


def apply_backend(model: "SentenceTransformer", path: str | Path, device: str, backend: str) -> "SentenceTransformer":
    """Move ``model``'s transformer onto the runtime named ``backend`` (in place) and return the model. ``auto`` is
    resolved to a runtime first (``runtime_calibration.resolve_runtime``)."""
    name = checked_runtime(backend)
    runtime = runtimes().get(name)
    if runtime is None:
        raise InferenceBackendError("'auto' is resolved by runtime_calibration.resolve_runtime before it is applied")
    if not runtime.available(device):
        raise InferenceBackendError(f"runtime {name!r} does not run on {device} here")
    return runtime.apply(model, Path(path), device)


def export_onnx(model: "SentenceTransformer", path: Path) -> Path:
    """The model's transformer as a fused ONNX graph in the cache (exported on first use)."""
    import torch  # lazy: heavy

    target = onnx_cache_root() / model_fingerprint(path) / "model.onnx"
    with _export_lock:
        if target.is_file():
            return target
        transformer: Any = model[0].model
        if type(transformer).__name__.startswith("Peft"):
            raise ValueError("adapter models are served by torch")
        target.parent.mkdir(parents=True, exist_ok=True)
        raw = target.with_name(f".raw-{os.getpid()}.onnx")
        tokenizer: Any = model[0].tokenizer
        sample = tokenizer(["an example", "a second, longer example"], return_tensors="pt", padding=True)
        inputs = tuple(sample.get(name, torch.zeros_like(sample["input_ids"])) for name in ONNX_INPUTS)
        axes = {name: {0: "batch", 1: "sequence"} for name in (*ONNX_INPUTS, "last_hidden_state")}
        with torch.no_grad():
            torch.onnx.export(
                _export_wrapper(transformer).eval(),
                inputs,
                str(raw),
                input_names=list(ONNX_INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,
            )
        fused = target.with_name(f".fused-{os.getpid()}.onnx")
        _fuse(raw, fused, transformer.config)
        raw.unlink(missing_ok=True)
        os.replace(fused, target)
        return target


def _fuse(source: Path, out: Path, config: Any) -> None:
    """ONNX Runtime's BERT graph fusions (SkipLayerNorm, BiasGelu, ...): fewer kernels, same math."""
    from onnxruntime.transformers import optimizer  # lazy: optional dependency

    fused = optimizer.optimize_model(
        str(source),
        model_type="bert",
        num_heads=int(config.num_attention_heads),
        hidden_size=int(config.hidden_size),
        opt_level=1,
    )
    fused.save_model_to_file(str(out))


def _export_wrapper(transformer: Any) -> Any:
    """The module exported: positional inputs in, ``last_hidden_state`` out."""
    import torch  # lazy: heavy

    class HiddenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids, return_dict=True
            ).last_hidden_state

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
        runtime_name = "onnx"

        def __init__(self) -> None:
            super().__init__()
            self.config = config
            # sentence-transformers reads the device from the parameters: one empty CPU tensor says "cpu".
            self.anchor = torch.nn.Parameter(torch.zeros(0), requires_grad=False)

        def forward(
            self, input_ids: Any = None, attention_mask: Any = None, token_type_ids: Any = None, **_: Any
        ) -> dict[str, Any]:
            if token_type_ids is None:
                token_type_ids = torch.zeros_like(input_ids)
            feeds = {
                "input_ids": input_ids.cpu().numpy(),
                "attention_mask": attention_mask.cpu().numpy(),
                "token_type_ids": token_type_ids.cpu().numpy(),
            }
            (hidden,) = session.run(["last_hidden_state"], feeds)
            return {"last_hidden_state": torch.from_numpy(hidden)}

    return OnnxTransformer()


def _bf16_module(transformer: Any, device: str) -> Any:
    """The transformer under bf16 autocast; its hidden states come back as fp32 for pooling and normalization."""
    import torch  # lazy: heavy

    device_type = "cuda" if device.startswith("cuda") else "cpu"

    class Bf16Transformer(torch.nn.Module):
        runtime_name = "torch-bf16"

        def __init__(self) -> None:
            super().__init__()
            self.inner = transformer
            self.config = transformer.config

        def forward(self, **features: Any) -> dict[str, Any]:
            features["return_dict"] = True
            with torch.autocast(device_type, dtype=torch.bfloat16):
                out = self.inner(**features)
            return {"last_hidden_state": out.last_hidden_state.float()}

    return Bf16Transformer()
