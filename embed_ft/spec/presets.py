"""Presets: named specs (`embed-ft run --preset NAME`, or `preset` in the `experiment_spec` asset's run config).

A preset is the profile's default spec (`experiment.default_spec`) with a few named fields changed; nothing else
is filled in later. Sources under ``{shared}`` are the data folder shipped beside the repository.

- ``scifact`` (the default): real domain adaptation offline. Triplets mined from BEIR SciFact's **train** queries,
  evaluated on its **test** queries (never used in training) and on held-out train queries.
- ``tutorial``: NVIDIA's tutorial: SPECTER from the Hugging Face Hub, evaluated on BEIR SciDocs, with the
  profile's training values (on NeMo the tutorial's own). Needs the Hub, and SciDocs in the evaluator's BEIR root.
- ``smoke``: the whole lineage in minutes on the real SPECTER sample: 3 training steps, SciFact evaluation. It
  proves the plumbing, not a gain.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ..profiles import BackendProfile
from .changes import apply_changes
from .experiment import SHARED_TOKEN, ExperimentSpec, default_spec


@dataclass(frozen=True)
class Preset:
    name: str
    summary: str
    expect: str  # what a person sees, and how long it takes on 2 CPU cores
    changes: dict[str, Any] = field(default_factory=dict)  # dotted field -> value, on top of the profile's defaults

    def spec(self, profile: BackendProfile) -> ExperimentSpec:
        return apply_changes(default_spec(profile), {**self.changes, "preset": self.name})


# The scifact training settings were chosen on validation queries (held-out SciFact train queries, never the test
# queries; bench/bench_recipe.py, BENCHMARKS.md section 4b): 3 epochs, lr 8e-5 after 8 warm-up steps (10% of 75)
# with linear decay, max_seq_length 128 for training (the served model keeps its own 256), with the mining defaults
# of `data/mining.py` (one negative from ranks 3-30).
PRESETS: dict[str, Preset] = {
    preset.name: preset
    for preset in (
        Preset(
            name="scifact",
            summary="SciFact train -> test: fine-tune on the train queries, measure on the test queries",
            expect="a report with SciFact nDCG@10 about 0.645 -> 0.728 (+12.8%); about 20 minutes on 2 CPU cores",
            changes={
                "data.source": f"{SHARED_TOKEN}/beir/scifact",
                "evaluation.tasks": ["file://scifact/"],
                "split.test_size": 80,
                "training.epochs": 3,
                "training.batch_size": 32,
                "training.learning_rate": 8e-5,
                "training.warmup_steps": 8,
                "training.max_seq_length": 128,
            },
        ),
        Preset(
            name="tutorial",
            summary="NVIDIA's tutorial: SPECTER from the Hub -> BEIR SciDocs, the backend's defaults",
            expect="needs the Hugging Face Hub and SciDocs on the evaluator; hours on CPU, about an hour on a GPU "
            "cluster",
            changes={"data.source": "embedding-data/SPECTER", "evaluation.tasks": ["file://scidocs/"]},
        ),
        Preset(
            name="smoke",
            summary="the whole lineage on the SPECTER sample, 3 training steps: plumbing, not a gain",
            expect="a report with deltas near 0; about 10 minutes on 2 CPU cores (SciFact evaluation dominates)",
            changes={
                "data.source": f"{SHARED_TOKEN}/specter-sample",
                "evaluation.tasks": ["file://scifact/"],
                "split.validation_size": 0.1,
                "split.test_size": 20,
                "training.max_steps": 3,
            },
        ),
    )
}
DEFAULT_PRESET = "scifact"


def preset_spec(name: str, profile: BackendProfile) -> ExperimentSpec:
    """The spec of preset ``name`` on ``profile``; ValueError naming the known presets."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
    return PRESETS[name].spec(profile)
