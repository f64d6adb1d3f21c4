"""Which inference runtime a model runs on and why: the measurements of a calibration, the decision rule of
``auto`` (``decide``), and where calibrations are kept (``RuntimeCalibrations``: the platform home, memory and the
machine's cache). The measuring itself is ``runtime_calibration.py``."""

from __future__ import annotations

import json
import logging
import os
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Sequence

from embed_ft.formats.files import atomic_write_text

from .inference_backend import RUNTIME_ENV, InferenceBackendError, checked_runtime

log = logging.getLogger("embed_ft.platform.inference")

MACHINE_CACHE_ENV = "EMBED_FT_RUNTIME_CACHE"
TOLERANCE = 1e-5  # max |difference| of normalized embeddings for a runtime to count as torch fp32's equal
MARGIN = 0.9  # a runtime replaces torch only when it takes at most this fraction of torch's time
# The flags that decide which runtime is fastest on a CPU (AVX-512 kernels, bf16 dot products, AMX tiles).
DECISIVE_CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16")


@dataclass(frozen=True)
class RuntimeMeasurement:
    """One runtime on the calibration batch: median seconds, time relative to torch fp32's, and the largest
    difference of its normalized embeddings from torch fp32's (None where the runtime could not run)."""

    runtime: str
    exact: bool
    seconds: float | None = None
    time_vs_torch: float | None = None
    max_abs_diff: float | None = None
    error: str | None = None

    def describe(self) -> str:
        if self.error:
            return f"{self.runtime}: cannot run ({self.error})"
        return f"{self.runtime}: {self.time_vs_torch:.2f}x torch's time, embeddings within {self.max_abs_diff:.1e}"


@dataclass(frozen=True)
class RuntimeChoice:
    """Which runtime computes a model, and why (``reason``: one sentence for people)."""

    setting: str
    runtime: str
    reason: str
    model: str = ""
    machine: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    measurements: tuple[RuntimeMeasurement, ...] = ()
    calibrated_at: str | None = None
    architecture: str = ""  # e.g. "bert 6x384, 256 tokens": what the calibration is kept for

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "measurements": [asdict(m) for m in self.measurements]}

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> "RuntimeChoice":
        measurements = tuple(RuntimeMeasurement(**m) for m in doc.get("measurements") or ())
        known = {f for f in cls.__dataclass_fields__}
        return cls(**{**{k: v for k, v in doc.items() if k in known}, "measurements": measurements})

    def measured(self, runtime: str) -> RuntimeMeasurement | None:
        return next((m for m in self.measurements if m.runtime == runtime), None)

    def summary(self) -> str:
        """``runtime (setting): reason``, plus the opt-in bf16 figure where it was measured."""
        line = f"{self.runtime} (setting {self.setting}): {self.reason}"
        bf16 = self.measured("torch-bf16")
        if self.runtime != "torch-bf16" and bf16 is not None and bf16.error is None:
            line += f"; opt-in torch-bf16 ({RUNTIME_ENV}=torch-bf16): {bf16.describe().split(': ', 1)[1]}"
        return line

    def metadata(self) -> dict[str, Any]:
        """What an evaluation records: the runtime, the setting, the reason and the calibration's figures."""
        return {
            "runtime": self.runtime,
            "setting": self.setting,
            "reason": self.reason,
            "calibrated_at": self.calibrated_at,
            "measurements": {
                m.runtime: {"time_vs_torch": m.time_vs_torch, "max_abs_diff": m.max_abs_diff, "error": m.error}
                for m in self.measurements
            },
        }


def decide(
    measurements: Sequence[RuntimeMeasurement], tolerance: float = TOLERANCE, margin: float = MARGIN
) -> tuple[str, str]:
    """The decision rule of ``auto``: (runtime, reason)."""
    rejected = [
        m.describe() + (f" > {tolerance:.0e}" if m.max_abs_diff is not None else "")
        for m in measurements
        if m.exact and m.runtime != "torch" and (m.error or m.max_abs_diff is None or m.max_abs_diff > tolerance)
    ]
    eligible = [
        m
        for m in measurements
        if m.exact
        and m.runtime != "torch"
        and not m.error
        and m.max_abs_diff is not None
        and m.max_abs_diff <= tolerance
        and m.time_vs_torch is not None
    ]
    fastest = min(eligible, key=lambda m: m.time_vs_torch or 0.0, default=None)
    if fastest is not None and (fastest.time_vs_torch or 1.0) <= margin:
        return fastest.runtime, (
            f"{fastest.describe()} of torch fp32's (<= {tolerance:.0e}); the fastest exact runtime on this machine"
        )
    why = rejected + ([f"{fastest.describe()}, not at most {margin}x"] if fastest is not None else [])
    if not why:
        return "torch", "torch fp32 is the only exact runtime that runs here"
    return "torch", "torch fp32 is kept: " + "; ".join(why)


def machine_key(device: str) -> dict[str, Any]:
    import torch  # lazy: heavy

    model_name, flags = "unknown", set[str]()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name" and model_name == "unknown":
                model_name = value.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(value.split())
    except OSError:
        pass
    cuda = torch.cuda.get_device_name(0) if device.startswith("cuda") and torch.cuda.is_available() else None
    return {
        "cpu": model_name,
        "cpu_flags": [f for f in DECISIVE_CPU_FLAGS if f in flags],
        "threads": torch.get_num_threads(),
        "device": device,
        "cuda": cuda,
    }


def machine_calibrations_dir() -> Path:
    """The calibrations every home of this machine reads before measuring (``EMBED_FT_RUNTIME_CACHE``, default
    ``~/.cache/embed_ft/runtimes``): a new home (each test, each experiment) copies them instead of measuring."""
    return Path(os.environ.get(MACHINE_CACHE_ENV) or Path.home() / ".cache" / "embed_ft" / "runtimes").expanduser()


class RuntimeCalibrations:
    """The cached calibrations of one platform home (``folder``), one JSON file per key, backed by a memory copy and
    the machine's (``machine_folder``): looked up in that order, written to all three."""

    _memory: dict[str, dict[str, Any]] = {}
    _lock = threading.Lock()

    def __init__(self, folder: Path | None, machine_folder: Path | None = None) -> None:
        self.folder = folder
        self.machine_folder = machine_folder

    @classmethod
    def forget_memory(cls) -> None:
        """Drop the in-memory copies (tests: measure again)."""
        with cls._lock:
            cls._memory.clear()

    def get(self, key: str) -> dict[str, Any] | None:
        with self._lock:
            doc = self._memory.get(key)
        for folder in (self.folder, self.machine_folder):
            if doc is None and folder is not None and (folder / f"{key}.json").is_file():
                try:
                    doc = json.loads((folder / f"{key}.json").read_text(encoding="utf-8"))
                except (OSError, ValueError):
                    doc = None  # a broken file is measured again
        if doc is not None:
            self.put(key, doc)
        return doc

    def put(self, key: str, doc: dict[str, Any]) -> None:
        with self._lock:
            self._memory[key] = doc
        for folder in (self.folder, self.machine_folder):
            if folder is not None and not (folder / f"{key}.json").is_file():
                try:
                    atomic_write_text(folder / f"{key}.json", json.dumps(doc, indent=1, sort_keys=True))
                except OSError as exc:  # a read-only machine cache: the home's copy still holds it
                    log.warning("cannot cache the runtime calibration in %s: %s", folder, exc)

    def all(self) -> list[RuntimeChoice]:
        """Every calibration stored in the folder, newest first (for ``platform status``)."""
        docs = []
        for file in sorted(self.folder.glob("*.json")) if self.folder is not None and self.folder.is_dir() else []:
            try:
                docs.append(RuntimeChoice.from_dict(json.loads(file.read_text(encoding="utf-8"))))
            except (OSError, ValueError, TypeError):
                continue
        return sorted(docs, key=lambda c: c.calibrated_at or "", reverse=True)


def runtime_status(folder: Path, setting: str | None) -> dict[str, Any]:
    """For ``platform status``: the runtime setting and the calibrations of this home (model, choice, reason)."""
    try:
        checked = checked_runtime(setting)
    except InferenceBackendError as exc:
        return {"setting": setting, "error": str(exc), "calibrations": []}
    return {
        "setting": checked,
        "calibrations": [
            {
                "model": choice.model[:12],
                "architecture": choice.architecture,
                "machine": choice.machine,
                "calibrated_at": choice.calibrated_at,
                "runtime": choice.runtime,
                "summary": choice.summary(),
            }
            for choice in RuntimeCalibrations(folder).all()
        ],
    }
