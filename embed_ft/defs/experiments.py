"""Experiments as Dagster partitions: one dynamic partition per experiment name.

`fine_tuned_model`, `fine_tuned_nim`, `fine_tuned_evaluation` and `evaluation_report` are partitioned by
`EXPERIMENTS`; the data assets and the baseline (`baseline_nim`, `baseline_evaluation`) are not, so that every
experiment's report reuses one baseline evaluation. An experiment's settings are its spec, stored as the
`experiment_spec` partition's materializations (see `experiment_spec.py`).

For the command line (`embed-ft run --experiment NAME`)::

    run_config = prepare_experiment_run(instance, name, "smoke", {"training.max_steps": 5})  # registers it
    defs.resolve_job_def("full_lineage_job").execute_in_process(
        run_config=run_config, instance=instance, partition_key=name, raise_on_error=False
    )
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

from dagster import DagsterInstance, DynamicPartitionsDefinition

from ..spec.names import validate_name

EXPERIMENTS_PARTITIONS_NAME = "experiments"
EXPERIMENTS = DynamicPartitionsDefinition(name=EXPERIMENTS_PARTITIONS_NAME)
DEFAULT_EXPERIMENT = "default"
SPEC_OP = "experiment_spec"  # the asset that stores each experiment's spec (experiment_spec.py)


def validate_experiment_name(name: str) -> str:
    """``name`` when it is a valid experiment (partition) name, else ValueError naming the rule."""
    return validate_name("experiment", name)


def experiment_names(instance: DagsterInstance) -> list[str]:
    """Every experiment registered in ``instance``, in creation order."""
    return list(instance.get_dynamic_partitions(EXPERIMENTS_PARTITIONS_NAME))


def add_experiment(instance: DagsterInstance, name: str) -> bool:
    """Register experiment ``name`` (a partition of `EXPERIMENTS`); True when it is new. ValueError on a bad name."""
    validate_experiment_name(name)
    if instance.has_dynamic_partition(EXPERIMENTS_PARTITIONS_NAME, name):
        return False
    instance.add_dynamic_partitions(EXPERIMENTS_PARTITIONS_NAME, [name])
    return True


def spec_run_config(preset: Optional[str], changes: Mapping[str, Any]) -> dict[str, Any]:
    """The run config that stores an experiment's spec: a preset (None: the stored spec) and the changed fields."""
    config: dict[str, Any] = {"changes": dict(changes)}
    if preset is not None:
        config["preset"] = preset
    return {"ops": {SPEC_OP: {"config": config}}}


def prepare_experiment_run(
    instance: DagsterInstance, experiment: str, preset: Optional[str], changes: Mapping[str, Any]
) -> dict[str, Any]:
    """Validate ``experiment``, register it as a partition and return the run config to launch with
    ``partition_key=experiment``: the run's first step stores the spec (``preset`` + ``changes``), every other step
    reads it (`experiment_spec.py`)."""
    add_experiment(instance, experiment)
    return spec_run_config(preset, changes)
