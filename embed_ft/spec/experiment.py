"""`ExperimentSpec`: every setting of one experiment, typed, described, bounded, in one document.

Sections: ``data``, ``mining``, ``split``, ``training`` (fine-tuning type and LoRA included), ``serving``,
``evaluation`` and ``remote`` (how long to wait for remote work). Unknown fields are refused at every level
(``extra="forbid"``), so a typo is an error naming the field, not a default. A field whose value depends on the
backend has no default here: `default_spec(profile)` takes it from the profile table (`embed_ft/profiles.py`);
data-layer defaults are read from the data layer. Presets (`presets.py`) are named changes on top. A spec is data:
`spec_version` hashes its settings; `changes.py` flattens specs to ``section.field`` values, applies changes and
lists differences.
"""

from __future__ import annotations

import os
import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ..data.cleaning import DEFAULT_MAX_TEXT_CHARS
from ..data.mining import SAMPLING_STRATEGIES, MiningSettings
from ..data.specter import DEFAULT_HUB_DATASET
from ..data.splitting import SplitOptions
from ..nemo.customizer import FINETUNING_TYPES
from ..nemo.evaluator import DEFAULT_METRICS
from ..profiles import BackendProfile
from .names import NAME_PATTERN

SHARED_TOKEN = "{shared}"  # in data.source: the shared data folder (see DataSpec.source)
SHARED_DATA_ENV = "EMBED_FT_SHARED_DATA"  # the shared data folder, when a person points at one
PRESET_DATA_ENV = "EMBED_FT_PRESET_DATA"  # what {shared} stands for: set by embed-ft (homes.py) on every command
HELDOUT_TASK = "heldout"
TASK_URL = re.compile(
    r"^(file://(?P<file>[A-Za-z0-9._-]+)/?|hf://datasets/[A-Za-z0-9._-]+/(?P<hf>[A-Za-z0-9._-]+)/?"
    r"|fileset://[a-z][a-z0-9@.+_-]+/(?P<fileset>[a-z][a-z0-9@.+_-]+)/?)$"
)
METRIC_NAME = re.compile(r"^(recall_\d+|ndcg_cut_\d+|map_cut_\d+|P_\d+|ndcg|map|recip_rank)$")
DAY_S = 7 * 24 * 3600.0


def unit(name: str) -> dict[str, Any]:
    """The unit a field is counted in, shown by `embed-ft run --help` beside its default."""
    return {"unit": name}


def task_name(files_url: str) -> str:
    """The task name of a BEIR task ``files_url``; ValueError saying which forms are accepted."""
    match = TASK_URL.match(files_url)
    if not match:
        raise ValueError(
            f"unknown evaluation task {files_url!r}: expected file://NAME/ (a BEIR set on the evaluator), "
            "hf://datasets/NAMESPACE/NAME (a BEIR-layout repo in the Data Store) or fileset://WORKSPACE/NAME (v2)"
        )
    return match.group("file") or match.group("hf") or match.group("fileset")


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class DataSpec(Section):
    source: str = Field(
        default=DEFAULT_HUB_DATASET,
        min_length=1,
        max_length=4096,
        description="Training source: a Hugging Face dataset id, a local file/folder (SPECTER layout) or a BEIR "
        f"folder; `{SHARED_TOKEN}/NAME` is NAME in the shared data folder ($EMBED_FT_SHARED_DATA, else "
        "../shared/data beside the checkout; without one, BEIR SciFact is fetched from the Hub).",
    )
    revision: Optional[str] = Field(
        default=None,
        max_length=256,
        description="Hub revision (branch, tag or sha) of the source; empty: the default branch.",
    )
    split: str = Field(
        default="train",
        min_length=1,
        max_length=64,
        description="Dataset split; for a BEIR folder the qrels split that becomes training data.",
    )
    subset: Optional[str] = Field(default=None, max_length=128, description="Hub dataset configuration, e.g. triplet.")
    source_kind: Literal["auto", "hub", "local", "beir"] = Field(
        default="auto",
        description="auto (an existing path is local, a BEIR-layout folder beir, else a Hub id), hub, local or beir.",
    )
    dataset_name: str = Field(
        default="embed-sft-data",
        pattern=NAME_PATTERN,
        description="Data Store repo and Entity Store dataset of the uploaded splits.",
    )

    def resolved(self) -> "DataSpec":
        """This section with ``source`` as a place to read: `{shared}/NAME` becomes NAME in the preset data folder
        ($EMBED_FT_PRESET_DATA, which `embed-ft` sets: the shared data folder when there is one, else the folder
        filled from the Hugging Face Hub; else $EMBED_FT_SHARED_DATA)."""
        if not self.source.startswith(SHARED_TOKEN):
            return self
        folder = os.environ.get(PRESET_DATA_ENV) or os.environ.get(SHARED_DATA_ENV)
        if not folder:
            raise ValueError(
                f"data.source {self.source!r} is in the shared data folder, but neither "
                f"{PRESET_DATA_ENV} nor {SHARED_DATA_ENV} is set: set {SHARED_DATA_ENV} to the folder "
                "holding the shared data"
            )
        return self.model_copy(update={"source": folder.rstrip("/") + self.source[len(SHARED_TOKEN) :]})


class MiningSpec(Section):
    """Hard-negative mining of a BEIR source (ignored for sources whose rows carry their negatives)."""

    model: Optional[str] = Field(
        default=None,
        max_length=4096,
        description="SentenceTransformer folder or id; empty: the packaged all-MiniLM-L6-v2.",
    )
    range_min: int = Field(
        default=MiningSettings.range_min,
        ge=0,
        le=100_000,
        json_schema_extra=unit("rank"),
        description="Skip the model's top candidates (likely unjudged positives).",
    )
    range_max: Optional[int] = Field(
        default=MiningSettings.range_max,
        ge=1,
        le=100_000,
        json_schema_extra=unit("rank"),
        description="Sample negatives from ranks [range_min, range_max).",
    )
    relative_margin: Optional[float] = Field(
        default=MiningSettings.relative_margin,
        ge=0,
        le=1,
        description="Drop candidates scoring above positive - |positive| x margin.",
    )
    absolute_margin: Optional[float] = Field(
        default=MiningSettings.absolute_margin,
        ge=0,
        le=2,
        description="Drop candidates scoring above positive - margin.",
    )
    max_score: Optional[float] = Field(
        default=MiningSettings.max_score, ge=-1, le=1, description="Drop candidates scoring above this."
    )
    sampling_strategy: Literal[SAMPLING_STRATEGIES] = Field(  # type: ignore[valid-type]
        default=MiningSettings.sampling_strategy, description="random (sample within the window) or top."
    )
    num_negatives: int = Field(
        default=MiningSettings.num_negatives,
        ge=1,
        le=64,
        json_schema_extra=unit("negatives"),
        description="Negatives per (query, positive) row.",
    )
    batch_size: int = Field(
        default=MiningSettings.batch_size,
        ge=1,
        le=4096,
        json_schema_extra=unit("texts"),
        description="Encoding batch size while mining.",
    )
    max_seq_length: Optional[int] = Field(
        default=MiningSettings.max_seq_length,
        ge=1,
        le=8192,
        json_schema_extra=unit("tokens"),
        description="Truncate texts when mining; empty: the model's own.",
    )
    use_faiss: Optional[bool] = Field(
        default=MiningSettings.use_faiss,
        description="Search candidates with faiss; empty: from faiss_min_corpus documents.",
    )
    faiss_min_corpus: int = Field(
        default=MiningSettings.faiss_min_corpus,
        ge=1,
        json_schema_extra=unit("documents"),
        description="Corpus size from which faiss is used (use_faiss empty).",
    )
    seed: int = Field(default=MiningSettings.seed, ge=0, le=2**32 - 1, description="Seed of the random sampling.")

    @model_validator(mode="after")
    def _window(self) -> "MiningSpec":
        if self.range_max is not None and self.range_max - self.range_min < self.num_negatives:
            raise ValueError(
                f"range_max - range_min ({self.range_max} - {self.range_min}) leaves fewer candidates "
                f"than num_negatives ({self.num_negatives})"
            )
        return self

    def settings(self) -> MiningSettings:
        return MiningSettings(**self.model_dump(exclude={"model"}))


class SplitSpec(Section):
    sample_size: Optional[int] = Field(
        default=SplitOptions.sample_size,
        ge=2,
        le=100_000_000,
        json_schema_extra=unit("rows"),
        description="Training + validation rows (test rows come on top); empty: all.",
    )
    sample_fraction: Optional[float] = Field(
        default=SplitOptions.sample_fraction,
        gt=0,
        le=1,
        description="Instead of sample_size: the fraction of clean rows.",
    )
    validation_size: float = Field(
        default=SplitOptions.validation_size,
        gt=0,
        le=10_000_000,
        json_schema_extra=unit("fraction or rows"),
        description="Validation rows: < 1 a fraction of the sample, >= 1 a row count.",
    )
    test_size: int = Field(
        default=SplitOptions.test_size,
        ge=1,
        le=10_000_000,
        json_schema_extra=unit("rows"),
        description="Held-out test rows, taken before the training/validation split.",
    )
    seed: int = Field(default=SplitOptions.seed, ge=0, le=2**32 - 1, description="Seed of the split.")
    max_text_chars: int = Field(
        default=DEFAULT_MAX_TEXT_CHARS,
        ge=1,
        le=10_000_000,
        json_schema_extra=unit("chars"),
        description="Rows with a longer text are dropped (too_long).",
    )

    @model_validator(mode="after")
    def _sizes(self) -> "SplitSpec":
        if self.sample_size is not None and self.sample_fraction is not None:
            raise ValueError("set either sample_size or sample_fraction, not both")
        if self.validation_size >= 1 and self.validation_size != int(self.validation_size):
            raise ValueError(f"validation_size >= 1 must be a whole number of rows, got {self.validation_size}")
        return self

    def options(self) -> SplitOptions:
        return SplitOptions(**self.model_dump(exclude={"max_text_chars"}))


class LoraSpec(Section):
    """``hyperparameters.lora`` of a lora / lora_merged job (the SDK's LoraParameters)."""

    adapter_dim: int = Field(default=8, ge=1, le=1024, description="Adapter rank.")
    alpha: int = Field(default=16, ge=1, le=4096, description="LoRA scaling factor (often 2 x adapter_dim).")
    adapter_dropout: Optional[float] = Field(
        default=None, ge=0, lt=1, description="Dropout in the adapter; empty: the backend's."
    )
    target_modules: Optional[tuple[str, ...]] = Field(
        default=None,
        max_length=64,
        description="Layers to adapt (NeMo: linear_qkv, linear_proj, linear_fc1, "
        "linear_fc2); empty: the backend's (locally the attention query and value projections).",
    )


class TrainingSpec(Section):
    target: str = Field(min_length=3, max_length=256, description="Customization target `namespace/name@version`.")
    output_model_name: Optional[str] = Field(
        default=None, pattern=NAME_PATTERN, description="Output model name; empty: `<experiment>-embed-sft`."
    )
    training_type: Literal["sft"] = Field(default="sft", description="Training type (the Customizer's).")
    finetuning_type: Literal[FINETUNING_TYPES] = Field(  # type: ignore[valid-type]
        default="all_weights", description="all_weights, lora or lora_merged."
    )
    lora: LoraSpec = Field(default_factory=LoraSpec, description="LoRA parameters (lora and lora_merged only).")
    epochs: int = Field(default=1, ge=1, le=1000, json_schema_extra=unit("epochs"), description="Training epochs.")
    batch_size: int = Field(ge=1, le=4096, json_schema_extra=unit("triplets"), description="Training batch size.")
    learning_rate: float = Field(gt=0, lt=1, description="Peak learning rate.")
    max_steps: Optional[int] = Field(
        default=None,
        ge=1,
        le=10_000_000,
        json_schema_extra=unit("steps"),
        description="Stop after this many steps; empty: the epochs decide.",
    )
    warmup_steps: Optional[int] = Field(
        default=None,
        ge=0,
        le=10_000_000,
        json_schema_extra=unit("steps"),
        description="Learning-rate warm-up steps, then linear decay; empty: the backend's (none locally).",
    )
    seed: Optional[int] = Field(default=None, ge=0, le=2**32 - 1, description="Training seed; empty: the backend's.")
    max_seq_length: int = Field(
        ge=1,
        le=8192,
        json_schema_extra=unit("tokens"),
        description="Training inputs are truncated to this many tokens.",
    )
    num_hard_negatives: Optional[int] = Field(
        default=None,
        ge=0,
        le=64,
        json_schema_extra=unit("negatives"),
        description="dataset_parameters.num_hard_negatives; empty: all.",
    )
    wandb_project: Optional[str] = Field(default=None, max_length=128, description="W&B project (needs WANDB_API_KEY).")


class ServingSpec(Section):
    base_model: str = Field(min_length=1, max_length=256, description="The base model the baseline NIM serves.")
    nim_image: str = Field(min_length=1, max_length=512, description="NIM image (ignored by the local platform).")
    nim_tag: str = Field(min_length=1, max_length=128, description="NIM image tag.")
    gpu: int = Field(default=1, ge=0, le=64, json_schema_extra=unit("GPUs"), description="GPUs per NIM.")


class EvaluationSpec(Section):
    tasks: tuple[str, ...] = Field(
        min_length=1,
        max_length=32,
        description="BEIR tasks as files_url: file://NAME/, hf://datasets/NS/NAME or fileset://WORKSPACE/NAME (v2).",
    )
    metrics: tuple[str, ...] = Field(
        default=DEFAULT_METRICS,
        min_length=1,
        max_length=32,
        description="trec_eval metric names (recall_K, ndcg_cut_K, map, recip_rank).",
    )
    top_k: int = Field(
        default=10, ge=1, le=1000, json_schema_extra=unit("documents"), description="Documents retrieved per query."
    )
    include_heldout: bool = Field(default=True, description="Also evaluate the held-out testing split (in-domain).")
    heldout_dataset_name: str = Field(
        default="embed-sft-heldout-beir",
        pattern=NAME_PATTERN,
        description="Data Store repo of the held-out split as a BEIR set.",
    )

    @field_validator("tasks")
    @classmethod
    def _tasks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        names = [task_name(url) for url in value]
        if HELDOUT_TASK in names:
            raise ValueError(f"the task name {HELDOUT_TASK!r} is reserved for the held-out split")
        if len(set(names)) != len(names):
            raise ValueError(f"two tasks have the same name: {names}")
        return value

    @field_validator("metrics")
    @classmethod
    def _metrics(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [m for m in value if not METRIC_NAME.match(m)]
        if bad:
            raise ValueError(f"unknown metric(s) {bad}; use recall_K, ndcg_cut_K, map, recip_rank")
        return value


class RemoteSpec(Section):
    """Waiting on remote work: not part of what is trained or measured (no new job when only these change)."""

    poll_interval_s: float = Field(
        default=5.0, ge=0.05, le=3600, json_schema_extra=unit("s"), description="Seconds between remote status polls."
    )
    training_timeout_s: float = Field(
        gt=0, le=DAY_S, json_schema_extra=unit("s"), description="Give up waiting for training (the job keeps running)."
    )
    deployment_timeout_s: float = Field(
        gt=0, le=DAY_S, json_schema_extra=unit("s"), description="Fail a NIM not ready and listed by then."
    )
    evaluation_timeout_s: float = Field(
        gt=0, le=DAY_S, json_schema_extra=unit("s"), description="Give up waiting for an evaluation."
    )


class ExperimentSpec(Section):
    profile: str = Field(min_length=1, max_length=64, description="The backend profile the defaults came from.")
    preset: Optional[str] = Field(default=None, max_length=64, description="The preset this spec started from.")
    data: DataSpec = Field(default_factory=DataSpec)
    mining: MiningSpec = Field(default_factory=MiningSpec)
    split: SplitSpec = Field(default_factory=SplitSpec)
    training: TrainingSpec
    serving: ServingSpec
    evaluation: EvaluationSpec
    remote: RemoteSpec


SECTIONS = ("data", "mining", "split", "training", "serving", "evaluation", "remote")


def default_spec(profile: BackendProfile) -> ExperimentSpec:
    """The spec with every default: the backend-dependent ones from ``profile``, the rest from the fields."""
    return ExperimentSpec(
        profile=profile.name,
        training=TrainingSpec(
            target=profile.target,
            batch_size=profile.batch_size,
            learning_rate=profile.learning_rate,
            max_seq_length=profile.max_seq_length,
        ),
        serving=ServingSpec(base_model=profile.base_model, nim_image=profile.nim_image, nim_tag=profile.nim_tag),
        evaluation=EvaluationSpec(tasks=profile.eval_tasks),
        remote=RemoteSpec(
            training_timeout_s=profile.training_timeout_s,
            deployment_timeout_s=profile.deployment_timeout_s,
            evaluation_timeout_s=profile.evaluation_timeout_s,
        ),
    )
