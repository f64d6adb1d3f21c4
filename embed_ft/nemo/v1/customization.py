"""The v1 Customizer's wire contract (``{NEMO_URL}/v1/customization/...``): targets, configs, jobs and their status.

Every hyperparameter is bounded here, before anything is stored: a job the embedded platform's worker cannot run is
a 422 naming the field and its bounds, not a job that fails (or runs for ever) later. The embedded platform's
server-side defaults are the local backend profile's (``embed_ft/profiles.py``); a client sends only what it sets
(``Request.body``), so those defaults never travel to a cluster.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, ConfigDict, Field

from ...profiles import LOCAL
from .contract import Request, Response

FINETUNING_TYPES = ("all_weights", "lora", "lora_merged")  # SDK 1.5 FinetuningType
LORA_FINETUNING_TYPES = ("lora", "lora_merged")  # the types that train PEFT adapters
FinetuningType = Literal["lora", "lora_merged", "all_weights"]
OPTIMIZERS = ("adam_with_cosine_annealing", "adam_with_flat_lr", "adamw_with_cosine_annealing", "adamw_with_flat_lr")
MAX_STEPS = 1_000_000


def _not_a_boolean(value: Any) -> Any:
    if isinstance(value, bool):
        raise ValueError("a boolean is not a number")
    return value


# Hyperparameter values: finite numbers (no NaN/Infinity, no "inf" strings), never booleans; integers are strict.
Finite = Annotated[float, BeforeValidator(_not_a_boolean), Field(allow_inf_nan=False)]
Count = Annotated[int, Field(strict=True)]


class TargetRequest(Request):
    """``POST /v1/customization/targets``: a base model a cluster can customize."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="the target's name")
    namespace: str = Field(description="its namespace")
    base_model: str | None = Field(None, description="the model's id (a Hub id, or a local folder here)")
    enabled: bool = Field(True, description="whether configs may use it")
    model_path: str | None = Field(None, description="where the weights are")
    model_uri: str | None = Field(None, description="where the weights come from")
    num_parameters: int | None = Field(None, ge=0, description="parameter count")
    precision: str | None = Field(None, description="weights' precision")
    description: str | None = Field(None, description="free text")


class TargetPatch(Request):
    """``PATCH /v1/customization/targets/{ns}/{name}``: only these fields change."""

    model_config = ConfigDict(extra="forbid")
    enabled: bool | None = Field(None, description="whether configs may use it")
    description: str | None = Field(None, description="free text")
    num_parameters: int | None = Field(None, ge=0, description="parameter count")
    precision: str | None = Field(None, description="weights' precision")
    custom_fields: dict[str, Any] | None = Field(None, description="free key/value pairs")


class Target(Response):
    name: str
    namespace: str
    base_model: str | None = None
    enabled: bool | None = None


class TrainingOption(Request):
    """One of a config's ``training_options``."""

    model_config = ConfigDict(extra="allow")
    training_type: Literal["sft"] = Field("sft", description="supervised fine-tuning")
    finetuning_type: FinetuningType = Field("all_weights", description="SDK 1.5 FinetuningType")
    num_gpus: int = Field(1, ge=0, description="GPUs per node")
    num_nodes: int = Field(1, ge=1, description="nodes")
    micro_batch_size: int = Field(1, ge=1, description="per-GPU batch")
    tensor_parallel_size: int = Field(1, ge=1, description="tensor parallelism")
    pipeline_parallel_size: int = Field(1, ge=1, description="pipeline parallelism")
    use_sequence_parallel: bool = Field(False, description="sequence parallelism")


class ConfigRequest(Request):
    """``POST /v1/customization/configs``: a versioned config (``name@v1``) of a target."""

    model_config = ConfigDict(extra="allow")
    name: str = Field(description="name, with its version: x@v1 (without one the platform adds @v1)")
    namespace: str = Field(description="its namespace")
    target: str = Field(description="the target's ns/name")
    training_options: list[TrainingOption] = Field(
        default_factory=lambda: [TrainingOption()], min_length=1, description="what the config can train"
    )
    training_precision: str | None = Field(None, description="bf16, fp16, fp32")
    max_seq_length: int | None = Field(None, ge=1, description="token limit of a training row")
    description: str | None = Field(None, description="free text")
    project: str | None = Field(None, description="a project")
    custom_fields: dict[str, Any] | None = Field(None, description="free key/value pairs")


class Config(Response):
    name: str
    namespace: str
    target: str | dict[str, Any] | None = None


class DatasetRef(Request):
    model_config = ConfigDict(extra="forbid")
    namespace: str = Field(description="the dataset's Entity Store namespace")
    name: str = Field(description="the dataset's name")


class LoraParameters(Request):
    """``hyperparameters.lora`` (SDK 1.5 ``LoraParameters``), trained by PEFT on the embedded platform."""

    model_config = ConfigDict(extra="forbid")
    adapter_dim: Count = Field(8, ge=1, le=1024, description="LoRA rank")
    alpha: Count = Field(16, ge=1, le=4096, description="LoRA alpha")
    adapter_dropout: Finite | None = Field(None, ge=0, lt=1, description="dropout on the adapter")
    target_modules: list[str] | None = Field(None, min_length=1, description="NeMo's or the model's module names")


class Hyperparameters(Request):
    """``hyperparameters`` of a job. ``weight_decay`` has no upper bound (any finite value trains); a job whose loss
    becomes non-finite fails ("loss became NaN at step N")."""

    # Unknown keys are refused: a typo ("learning_rte") must not silently train with the default.
    model_config = ConfigDict(extra="forbid")
    training_type: Literal["sft"] = Field("sft", description="supervised fine-tuning")
    finetuning_type: FinetuningType = Field("all_weights", description="SDK 1.5 FinetuningType")
    epochs: Count = Field(1, ge=1, le=1000, description="passes over the training data")
    batch_size: Count = Field(LOCAL.batch_size, ge=1, le=4096, description="global batch size")
    learning_rate: Finite = Field(LOCAL.learning_rate, gt=0, le=1, description="peak learning rate")
    max_steps: Count | None = Field(None, ge=-1, le=MAX_STEPS, description="stop after this many steps (-1: none)")
    warmup_steps: Count = Field(0, ge=0, le=MAX_STEPS, description="linear warm-up steps")
    weight_decay: Finite = Field(0.0, ge=0, description="AdamW weight decay")
    adam_beta1: Finite | None = Field(None, ge=0, lt=1, description="Adam beta1")
    adam_beta2: Finite | None = Field(None, ge=0, lt=1, description="Adam beta2")
    seed: Count = Field(42, ge=0, le=2**32 - 1, description="random seed")
    val_check_interval: Finite | None = Field(None, gt=0, le=MAX_STEPS, description="validation every N steps")
    log_every_n_steps: Count | None = Field(None, ge=1, le=MAX_STEPS, description="logging interval")
    min_learning_rate: Finite | None = Field(None, ge=0, le=1, description="floor of the schedule")
    optimizer: Literal[OPTIMIZERS] | None = Field(None, description="optimizer and schedule")  # type: ignore[valid-type]
    max_seq_length: Count | None = Field(None, ge=1, le=8192, description="token limit of a training row")
    # Method-specific blocks of the NeMo API: ``lora`` configures the lora/lora_merged adapters; ``sft`` is stored.
    sft: dict[str, Any] | None = Field(None, description="SFT-specific options (stored)")
    lora: LoraParameters | None = Field(None, description="the LoRA adapter of lora/lora_merged jobs")


class DatasetParameters(Request):
    model_config = ConfigDict(extra="allow")
    num_hard_negatives: Count | None = Field(None, ge=0, le=1000, description="negatives per row used")
    negative_sample_strategy: Literal["first", "random"] = Field("first", description="which negatives")
    in_batch_negatives: bool = Field(True, description="use the batch's other positives as negatives")


class JobRequest(Request):
    """``POST /v1/customization/jobs``. The answer's ``output_model`` carries ``@<job id>``."""

    model_config = ConfigDict(extra="forbid")
    config: str = Field(description="the config's ns/name@vN")
    dataset: DatasetRef | str = Field(description="{namespace, name} of a registered dataset, or ns/name")
    hyperparameters: Hyperparameters = Field(description="training hyperparameters")
    output_model: str | None = Field(None, description="ns/name of the model to write")
    name: str | None = Field(None, description="the job's name")
    namespace: str | None = Field(None, description="its namespace")
    description: str | None = Field(None, description="free text")
    project: str | None = Field(None, description="a project")
    dataset_parameters: DatasetParameters | None = Field(None, description="how training rows are read")
    integrations: list[dict[str, Any]] | None = Field(None, description="e.g. wandb")
    custom_fields: dict[str, Any] | None = Field(None, description="free key/value pairs (the idempotency key)")
    ownership: dict[str, Any] | None = Field(None, description="owner fields (stored)")


class StatusLog(Response):
    updated_at: Any = None
    message: Any = None
    detail: Any = None


class Job(Response):
    """A customization job (``POST``/``GET /v1/customization/jobs[/{id}]``; cancel answers it too)."""

    id: str
    status: str | None = None
    output_model: str | None = None
    custom_fields: dict[str, Any] | None = None
    config_snapshot: dict[str, Any] | None = None
    status_details: dict[str, Any] | None = None


class JobStatus(Response):
    """``GET /v1/customization/jobs/{id}/status``; the error text of a failed job is the last ``status_logs`` detail."""

    status: str
    percentage_done: float | None = None
    epochs_completed: int | None = None
    steps_completed: int | None = None
    steps_per_epoch: int | None = None
    train_loss: float | None = None
    val_loss: float | None = None
    metrics: dict[str, Any] | None = None
    status_logs: list[StatusLog] = Field(default_factory=list)


class JobLogs(Response):
    """``GET /v1/customization/jobs/{id}/container-logs`` (the SDK's ``JobLogs``)."""

    entries: dict[str, Any] | None = None
    error: str | None = None
