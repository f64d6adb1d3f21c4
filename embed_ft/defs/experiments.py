"""Experiments as Dagster partitions: one dynamic partition per experiment name.

`fine_tuned_model`, `fine_tuned_nim`, `fine_tuned_evaluation` and `evaluation_report` are partitioned by
`EXPERIMENTS`; the data assets and the baseline (`baseline_nim`, `baseline_evaluation`) are not, so that every
experiment's report reuses one baseline evaluation. An experiment's settings are stored with its partition's
materializations (see `settings.py`).

For the command line (`embed-ft run --experiment NAME`)::

    run_config = prepare_experiment_run(instance, name, run_config)  # validates, registers the partition
    defs.resolve_job_def("full_lineage_job").execute_in_process(
        run_config=run_config, instance=instance, partition_key=name, raise_on_error=False
    )
"""

from __future__ import annotations

import copy
from typing import Any

from dagster import DagsterInstance, DynamicPartitionsDefinition

from .common import validate_name

EXPERIMENTS_PARTITIONS_NAME = "experiments"
EXPERIMENTS = DynamicPartitionsDefinition(name=EXPERIMENTS_PARTITIONS_NAME)
DEFAULT_EXPERIMENT = "default"
# Ops whose config once carried an `experiment` field; the partition key replaced it.
LEGACY_EXPERIMENT_OPS = ("fine_tuned_model", "fine_tuned_nim", "baseline_nim")


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


def prepare_experiment_run(instance: DagsterInstance, experiment: str, run_config: dict[str, Any]) -> dict[str, Any]:
    """Validate ``experiment``, register it as a partition and return the run config to launch with
    ``partition_key=experiment``.

    The settings in ``run_config`` become the experiment's stored settings when the run materializes its assets, so
    later sensor- or automation-launched runs of this experiment reuse them. An ``experiment`` entry left in an op's
    config by older callers is removed (the partition key names the experiment now); a different value is an error.
    """
    validate_experiment_name(experiment)
    prepared = copy.deepcopy(run_config)
    for op_name in LEGACY_EXPERIMENT_OPS:
        op_config = ((prepared.get("ops") or {}).get(op_name) or {}).get("config")
        if isinstance(op_config, dict) and "experiment" in op_config:
            given = op_config.pop("experiment")
            if given != experiment:
                raise ValueError(f"{op_name}.experiment is {given!r} but the run is for experiment {experiment!r}")
    add_experiment(instance, experiment)
    return prepared
