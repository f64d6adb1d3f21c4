"""The ``auto`` inference runtime: which registered runtime computes a model fastest, with torch fp32's embeddings.

Once per machine (CPU model, the CPU flags that decide it, threads, device), model (weights fingerprint) and runtime
versions, a small fixed batch of texts goes through every installed runtime (``inference_backend.runtimes()``):
one untimed pass gives each runtime's embeddings, compared with torch fp32's after L2 normalization (what retrieval
scores), then ``ROUNDS`` timed passes, interleaved in a rotating order so that a shared machine's load falls on
every runtime alike; each runtime's time is its median. ``decide`` is the rule: the fastest exact runtime whose
embeddings are within ``TOLERANCE`` of torch's and whose time is at most ``MARGIN`` x torch's; torch otherwise.
The measurements and the decision are cached as JSON under ``<platform home>/cache/runtimes/`` (and in memory, and
for the machine under ``~/.cache/embed_ft/runtimes``, so that a new home copies them instead of measuring again),
so that ``platform status`` and each evaluation's metadata can say which runtime runs and why. Calibrations are
kept per model architecture, not per weights (speed does not depend on the weights): a model with other weights
has the chosen runtime's embeddings checked against torch fp32's again, one pass each.

``torch-bf16`` is opt-in: the same calibration measures it (where the hardware has native bf16) and its deviation
from torch fp32 is shown beside it; ``auto`` never chooses it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ..store import utc_now
from .inference_backend import AUTO, RUNTIME_ENV, InferenceBackendError, checked_runtime, runtimes
from .model_weights import model_fingerprint
from .runtime_choice import TOLERANCE, RuntimeCalibrations, RuntimeChoice, RuntimeMeasurement, decide, machine_key

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

log = logging.getLogger("embed_ft.platform.inference")

CALIBRATION_VERSION = 1
ROUNDS = 3
TEXTS = 16
CALIBRATED = (AUTO, "torch-bf16")  # the settings that need the measurements

Clock = Callable[[str, Callable[[], Any]], float]  # (runtime name, one pass) -> seconds it took


def perf_clock(name: str, work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def calibration_texts(count: int = TEXTS) -> list[str]:
    """A fixed batch (same on every machine): lengths from a query's to a long abstract's."""
    rng = random.Random(20261207)
    words = (
        "protein cell expression gene tumor patients risk model network data analysis clinical increased "
        "associated mice response effect treatment study results human levels role mechanism signaling "
        "activity function disease receptor immune therapy cancer binding structure dynamics"
    ).split()
    return [" ".join(rng.choice(words) for _ in range(8 + (i * 112) // max(count - 1, 1))) for i in range(count)]


def _normalized(vectors: Any) -> np.ndarray:
    array: np.ndarray = np.asarray(vectors, dtype=np.float64)
    norms: np.ndarray = np.maximum(np.linalg.norm(array, axis=1, keepdims=True), 1e-12)
    normalized: np.ndarray = array / norms
    return normalized


def measure(
    passes: dict[str, Callable[[], Any]],
    exact: dict[str, bool],
    rounds: int = ROUNDS,
    clock: Clock = perf_clock,
    errors: dict[str, str] | None = None,
) -> list[RuntimeMeasurement]:
    """Measure every runtime's pass against ``passes["torch"]`` (see the module docstring)."""
    reference = _normalized(passes["torch"]())
    diffs = {"torch": 0.0}
    failed = dict(errors or {})
    for name, run in passes.items():
        if name != "torch":
            try:
                diffs[name] = float(np.abs(_normalized(run()) - reference).max())
            except Exception as exc:  # noqa: BLE001  (a runtime that breaks on the batch is not a candidate)
                failed[name] = f"{type(exc).__name__}: {exc}"
    names = [name for name in passes if name not in failed]
    times: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(rounds):
        shift = round_index % len(names)
        for name in names[shift:] + names[:shift]:
            times[name].append(clock(name, passes[name]))
    seconds = {name: statistics.median(values) for name, values in times.items()}
    out = [
        RuntimeMeasurement(
            name,
            exact[name],
            round(seconds[name], 6),
            round(seconds[name] / seconds["torch"], 4) if seconds["torch"] > 0 else None,
            diffs[name],
        )
        for name in names
    ]
    return out + [RuntimeMeasurement(name, exact.get(name, False), error=error) for name, error in failed.items()]


def architecture(model: "SentenceTransformer") -> dict[str, Any]:
    """What a runtime's speed depends on: the transformer's config (its weights aside) and the sequence length."""
    transformer: Any = model[0].model
    config = {
        k: v
        for k, v in transformer.config.to_dict().items()
        if not k.startswith("_") and k not in ("transformers_version", "name_or_path")
    }
    return {
        "config": config,
        "max_seq_length": int(model.max_seq_length or 0),
        "modules": [type(m).__name__ for m in model],
    }


def resolve_runtime(
    setting: str | None,
    path: Path,
    device: str,
    load: Callable[[], "SentenceTransformer"],
    calibrations: RuntimeCalibrations,
    clock: Clock = perf_clock,
    rounds: int = ROUNDS,
) -> tuple["SentenceTransformer", RuntimeChoice]:
    """The model at ``path`` on the runtime ``setting`` asks for (``auto``: calibrated), and why.

    Calibrations are kept per model architecture (speed does not depend on the weights); a model whose weights were
    not the calibrated ones has the chosen runtime's embeddings checked against torch fp32's again (one pass each)."""
    setting = checked_runtime(setting)
    registry = runtimes()
    fingerprint = model_fingerprint(path)
    if setting not in CALIBRATED:
        if not registry[setting].available(device):
            raise InferenceBackendError(f"runtime {setting!r} does not run on {device} here")
        reason = "BEIR's own computation" if setting == "torch" else "asked for"
        return (
            registry[setting].apply(load(), path, device),
            RuntimeChoice(setting, setting, f"{reason} ({RUNTIME_ENV}={setting})", fingerprint),
        )
    available = {name: runtime for name, runtime in registry.items() if runtime.available(device)}
    versions = {name: runtime.version() for name, runtime in available.items()}
    machine = machine_key(device)
    models = {"torch": load()}
    arch = architecture(models["torch"])
    key_doc = {"version": CALIBRATION_VERSION, "architecture": arch, "machine": machine, "versions": versions}
    arch_text = (
        f"{arch['config'].get('model_type', '?')} {arch['config'].get('num_hidden_layers', '?')}x"
        f"{arch['config'].get('hidden_size', '?')}, {arch['max_seq_length']} tokens"
    )
    key = hashlib.sha256(json.dumps(key_doc, sort_keys=True, default=str).encode()).hexdigest()[:24]
    cached = calibrations.get(key)
    measurements: Sequence[RuntimeMeasurement]
    if cached is not None:
        measurements, calibrated_at = RuntimeChoice.from_dict(cached).measurements, cached.get("calibrated_at")
    else:
        measurements = _calibrate(available, path, device, load, models, clock, rounds)
        calibrated_at = utc_now()
    runtime, reason = decide(measurements)
    if cached is None:
        calibrations.put(
            key,
            RuntimeChoice(
                AUTO, runtime, reason, fingerprint, machine, versions, tuple(measurements), calibrated_at, arch_text
            ).to_dict(),
        )
        log.info("runtime calibration of %s: %s (%s)", path, runtime, reason)
    if setting == "torch-bf16":
        runtime, reason = "torch-bf16", _bf16_reason(measurements, device)
    if runtime not in models:
        same_weights = cached is not None and cached.get("model") == fingerprint
        runtime, reason = _checked_again(
            runtime, reason, available[runtime], path, device, load, models, check=not same_weights
        )
    return models[runtime], RuntimeChoice(
        setting, runtime, reason, fingerprint, machine, versions, tuple(measurements), calibrated_at, arch_text
    )


def _bf16_reason(measurements: Sequence[RuntimeMeasurement], device: str) -> str:
    bf16 = next((m for m in measurements if m.runtime == "torch-bf16"), None)
    if bf16 is None or bf16.error:
        raise InferenceBackendError(
            f"runtime 'torch-bf16' does not run on {device} here"
            + (f": {bf16.error}" if bf16 is not None and bf16.error else "")
        )
    return f"opt-in ({RUNTIME_ENV}=torch-bf16); {bf16.describe()} of torch fp32's"


def _checked_again(
    runtime: str,
    reason: str,
    chosen: Any,
    path: Path,
    device: str,
    load: Callable[[], "SentenceTransformer"],
    models: dict[str, Any],
    check: bool,
) -> tuple[str, str]:
    """The cached choice applied to these weights; an exact runtime must still match torch fp32 on other weights
    than the calibrated ones (every fourth calibration text: one short pass each)."""
    try:  # without a check the torch model is not needed: the runtime takes it over (one load, not two)
        models[runtime] = chosen.apply(load() if check else models["torch"], path, device)
    except Exception as exc:  # noqa: BLE001  (e.g. an adapter model ONNX cannot take: torch serves it)
        if not chosen.exact:
            raise
        return "torch", f"torch fp32 is kept: {runtime} cannot run these weights ({type(exc).__name__}: {exc})"
    if not chosen.exact or not check:
        return runtime, reason
    texts = calibration_texts()[::4]
    vectors = {
        name: _normalized(models[name].encode(texts, batch_size=len(texts), convert_to_numpy=True))
        for name in ("torch", runtime)
    }
    diff = float(np.abs(vectors[runtime] - vectors["torch"]).max())
    if diff > TOLERANCE:
        return "torch", (
            f"torch fp32 is kept: {runtime}'s embeddings of these weights differ from torch fp32's by "
            f"{diff:.1e} > {TOLERANCE:.0e}"
        )
    return runtime, reason + f"; these weights checked again: within {diff:.1e}"


def _calibrate(
    available: dict[str, Any],
    path: Path,
    device: str,
    load: Callable[[], "SentenceTransformer"],
    models: dict[str, "SentenceTransformer"],
    clock: Clock,
    rounds: int,
) -> list[RuntimeMeasurement]:
    texts = calibration_texts()
    errors: dict[str, str] = {}
    for name, runtime in available.items():
        try:
            models.setdefault(name, runtime.apply(load(), path, device) if name != "torch" else models["torch"])
        except Exception as exc:  # noqa: BLE001  (a runtime that cannot take this model is not a candidate)
            errors[name] = f"{type(exc).__name__}: {exc}"

    def encoding(model: "SentenceTransformer") -> Callable[[], Any]:
        return lambda: model.encode(texts, batch_size=len(texts), convert_to_numpy=True)

    passes = {name: encoding(model) for name, model in models.items()}
    return measure(passes, {name: runtime.exact for name, runtime in available.items()}, rounds, clock, errors)
