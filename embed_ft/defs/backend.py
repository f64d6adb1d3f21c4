"""Per-backend defaults: the tutorial's values on a NeMo cluster, a small CPU-friendly profile locally.

A run config field left empty (None) takes the value of the backend its resources point at, so the same
Launchpad config works on both; any explicit value wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from dagster import AutomationCondition

# GPU stages rebuild when their inputs change, but only while the `gpu_stages_automation` sensor is running:
# it is stopped by default so that nothing expensive starts by surprise.
GPU_STAGE_CONDITION = AutomationCondition.eager()


@dataclass(frozen=True)
class BackendDefaults:
    name: str
    target: str
    base_model: str
    batch_size: int
    learning_rate: float
    max_seq_length: int
    eval_tasks: tuple[str, ...]
    training_timeout_s: float
    deployment_timeout_s: float
    evaluation_timeout_s: float


NEMO_CLUSTER = BackendDefaults(
    name="nemo",
    target="nvidia/llama-3.2-nv-embedqa-1b@v2",
    base_model="nvidia/llama-3.2-nv-embedqa-1b-v2",
    batch_size=256,
    learning_rate=5e-6,
    max_seq_length=2048,
    eval_tasks=("file://scidocs/",),
    training_timeout_s=4 * 3600,
    deployment_timeout_s=45 * 60,
    evaluation_timeout_s=3 * 3600,
)

# all-MiniLM-L6-v2 on 2 CPU cores: smaller batches and a higher learning rate so that one short epoch
# moves the model measurably (5e-6 over a handful of steps changes almost nothing).
LOCAL_PLATFORM = BackendDefaults(
    name="local",
    target="sentence-transformers/all-minilm-l6-v2@v1",
    base_model="sentence-transformers/all-MiniLM-L6-v2",
    batch_size=32,
    learning_rate=2e-5,
    max_seq_length=256,
    eval_tasks=("file://scifact/",),
    training_timeout_s=2 * 3600,
    deployment_timeout_s=10 * 60,
    evaluation_timeout_s=2 * 3600,
)


def backend_defaults(uses_local_platform: bool) -> BackendDefaults:
    return LOCAL_PLATFORM if uses_local_platform else NEMO_CLUSTER
