"""Named run settings for `embed-ft run --preset NAME`: one typed table, read by the CLI only.

A preset fills the run options a person did not give; every explicit option wins. Paths under ``{shared}`` are the
data folder shipped beside the repository (``$EMBED_FT_SHARED_DATA``, else ``<project root>/../shared/data``).

- ``scifact`` (the default): real domain adaptation offline. Triplets mined from BEIR SciFact's **train** queries,
  evaluated on its **test** queries (never used in training) and on held-out train queries.
- ``tutorial``: NVIDIA's tutorial: SPECTER from the Hugging Face Hub, evaluated on BEIR SciDocs, the backend's
  defaults (on NeMo: llama-3.2-nv-embedqa-1b-v2, 1 epoch, batch 256, lr 5e-6). Needs the Hub, and SciDocs in the
  evaluator's BEIR root.
- ``smoke``: the whole lineage in minutes on the real SPECTER sample: 3 training steps, SciFact evaluation. It
  proves the plumbing, not a gain.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Optional

SHARED = "{shared}"


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    expect: str  # what a person sees, and how long it takes on 2 CPU cores
    source: str
    tasks: tuple[str, ...] = ()  # empty: the backend's default task
    sample_size: Optional[int] = None
    validation_size: Optional[float] = None
    test_size: Optional[int] = None
    epochs: Optional[int] = None
    batch_size: Optional[int] = None
    learning_rate: Optional[float] = None
    max_steps: Optional[int] = None
    warmup_steps: Optional[int] = None
    max_seq_length: Optional[int] = None

    def options(self, shared: str) -> dict[str, Any]:
        """The run options this preset sets (None = leave to the asset's Config default)."""
        values = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("name", "summary", "expect")}
        values["source"] = self.source.replace(SHARED, shared)
        values["tasks"] = list(self.tasks) or None
        return {key: value for key, value in values.items() if value is not None}


# The scifact training settings were chosen on validation queries (held-out SciFact train queries, never the test
# queries; bench/bench_recipe.py, BENCHMARKS.md section 4b): 3 epochs, lr 8e-5 after 8 warm-up steps (10% of 75)
# with linear decay, max_seq_length 128 for training (the served model keeps its own 256), bf16 mixed precision where
# the CPU has it (the config's training_precision), with the mining defaults of `data/mining.py` (one negative from
# ranks 3-30).
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="scifact",
            summary="SciFact train -> test: fine-tune on the train queries, measure on the test queries",
            expect="a report with SciFact nDCG@10 about 0.645 -> 0.728 (+12.8%); about 25 minutes on 2 CPU cores",
            source=f"{SHARED}/beir/scifact",
            tasks=("file://scifact/",),
            test_size=80,
            epochs=3,
            batch_size=32,
            learning_rate=8e-5,
            warmup_steps=8,
            max_seq_length=128,
        ),
        Preset(
            name="tutorial",
            summary="NVIDIA's tutorial: SPECTER from the Hub -> BEIR SciDocs, the backend's defaults",
            expect="needs the Hugging Face Hub and SciDocs on the " "evaluator; hours on CPU, about an hour on a GPU cluster",
            source="embedding-data/SPECTER",
            tasks=("file://scidocs/",),
        ),
        Preset(
            name="smoke",
            summary="the whole lineage on the SPECTER sample, 3 training steps: plumbing, not a gain",
            expect="a report with deltas near 0; about 10 minutes on 2 CPU cores (SciFact evaluation dominates)",
            source=f"{SHARED}/specter-sample",
            tasks=("file://scifact/",),
            validation_size=0.1,
            test_size=20,
            max_steps=3,
        ),
    )
}
DEFAULT_PRESET = "scifact"
