"""Reports on a real Dagster instance without the GPU stages: fixed evaluation values are materialized as the
`baseline_evaluation` / `fine_tuned_evaluation` assets, then the real `evaluation_report` runs on them. Everything
goes through Dagster's default filesystem IO manager in the instance's storage, so the stored `Report` values are
what the leaderboard asset and `embed-ft report --experiments` load."""

from dagster import AssetExecutionContext, DagsterInstance, MaterializeResult, asset, materialize

from embed_ft.defs.experiments import EXPERIMENTS, add_experiment
from embed_ft.defs.report import evaluation_report
from embed_ft.defs.values import EvaluationResult


def materialize_reports(
    instance: DagsterInstance, baseline: EvaluationResult, fine_tuned: dict[str, EvaluationResult]
) -> dict[str, MaterializeResult]:
    """The report of each experiment in ``fine_tuned`` (its partition), in order; returns each run's result."""

    @asset(name="baseline_evaluation")
    def fixed_baseline() -> EvaluationResult:
        return baseline

    @asset(name="fine_tuned_evaluation", partitions_def=EXPERIMENTS)
    def fixed_fine_tuned(context: AssetExecutionContext) -> EvaluationResult:
        return fine_tuned[context.partition_key]

    results = {}
    for experiment in fine_tuned:
        add_experiment(instance, experiment)
        results[experiment] = materialize(
            [fixed_baseline, fixed_fine_tuned, evaluation_report], instance=instance, partition_key=experiment
        )
        assert results[experiment].success
    return results
