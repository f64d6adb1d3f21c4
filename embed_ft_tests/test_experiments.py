"""Experiments as partitions, the report's statistics and pictures, and the leaderboard — on a real Dagster
instance, with evaluation values handed in by an IO manager (no platform: seconds). The whole lineage with two
experiments on a real local platform is in test_lineage_e2e.py."""

from __future__ import annotations

import base64
import random

import pytest
from dagster import AssetKey, DagsterInstance, SourceAsset, materialize

from embed_ft.defs.charts import loss_curve_png, markdown_image
from embed_ft.defs.experiments import EXPERIMENTS, add_experiment, experiment_names, prepare_experiment_run
from embed_ft.defs.leaderboard import (
    experiment_leaderboard,
    leaderboard_markdown,
    leaderboard_rows,
    reports_by_experiment,
)
from embed_ft.defs.report import CHECK_NAME, evaluation_report
from embed_ft.defs.significance import (
    BETTER,
    MIN_QUERIES,
    NO_DIFFERENCE,
    NOT_TESTED,
    TOO_FEW,
    WORSE,
    paired_test,
    per_query_scores,
)
from embed_ft.defs.values import EvaluationResult
from embed_ft.history import latest_reports
from embed_ft.platform.services.evaluation import nemo_results

from .report_fixtures import materialize_reports

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def scores(n: int, mean: float, seed: int, spread: float = 0.15) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    return {f"q{i}": {"ndcg_cut_10": min(1.0, max(0.0, rng.gauss(mean, spread)))} for i in range(n)}


def shifted(base: dict[str, dict[str, float]], shift: float, seed: int) -> dict[str, dict[str, float]]:
    rng = random.Random(seed)
    return {
        q: {"ndcg_cut_10": min(1.0, max(0.0, s["ndcg_cut_10"] + shift + rng.gauss(0, 0.02)))} for q, s in base.items()
    }


def evaluation(model: str, per_query: dict[str, dict[str, dict[str, float]]]) -> EvaluationResult:
    metrics = {
        task: {"ndcg_cut_10": sum(s["ndcg_cut_10"] for s in qs.values()) / len(qs), "recall_10": 0.5}
        for task, qs in per_query.items()
    }
    return EvaluationResult(
        model=model,
        job_id=f"eval-{model}",
        tasks={t: f"file://{t}/" for t in per_query},
        metrics=metrics,
        per_query=per_query,
        queries={t: len(qs) for t, qs in per_query.items()},
    )


# ------------------------------------------------------------------------------------------------ significance


def test_a_clear_gain_over_enough_queries_is_significant():
    base = scores(60, 0.5, seed=1)
    test = paired_test("scifact", "ndcg_cut_10", base, shifted(base, 0.05, seed=2))
    assert test.verdict == BETTER
    assert test.queries == 60
    assert test.p_value < 0.05
    assert 0 < test.ci_low < test.mean_delta < test.ci_high


def test_a_clear_loss_is_significantly_worse_and_noise_is_no_difference():
    base = scores(60, 0.5, seed=3)
    assert paired_test("t", "ndcg_cut_10", base, shifted(base, -0.05, seed=4)).verdict == WORSE
    noisy = paired_test("t", "ndcg_cut_10", base, shifted(base, 0.0, seed=5))
    assert noisy.verdict == NO_DIFFERENCE
    assert noisy.ci_low < 0 < noisy.ci_high
    same = paired_test("t", "ndcg_cut_10", base, base)
    assert same.p_value == 1.0


def test_too_few_queries_support_no_claim_and_missing_scores_are_not_tested():
    base = scores(MIN_QUERIES - 1, 0.5, seed=6)
    few = paired_test("heldout", "ndcg_cut_10", base, shifted(base, 0.2, seed=7))
    assert few.verdict == TOO_FEW
    assert few.queries == MIN_QUERIES - 1
    assert f"< {MIN_QUERIES}" in few.note
    untested = paired_test("scidocs", "ndcg_cut_10", None, None, queries_reported=1000)
    assert untested.verdict == NOT_TESTED
    assert untested.queries == 1000
    assert "could not be tested" in untested.note


def test_per_query_scores_are_read_from_the_results_document():
    results = {
        "tasks": {
            "scifact": {"metrics": {}, "per_query": {"q1": {"ndcg_cut_10": 0.5}, "q2": {"ndcg_cut_10": 1}}},
            "other": {"metrics": {}},
        }
    }
    assert per_query_scores(results) == {"scifact": {"q1": {"ndcg_cut_10": 0.5}, "q2": {"ndcg_cut_10": 1.0}}}
    assert per_query_scores({"groups": {}}) == {}


# ------------------------------------------------------------------------------------------------ experiments


def test_experiment_names_are_validated_and_registered_once():
    with DagsterInstance.ephemeral() as instance:
        assert add_experiment(instance, "lr-2e-5") is True
        assert add_experiment(instance, "lr-2e-5") is False
        with pytest.raises(ValueError, match="experiment must be 1-63 characters"):
            add_experiment(instance, "Not A Name")
        config = prepare_experiment_run(instance, "epochs-3", "smoke", {"training.epochs": 3})
        # The run config names the preset and the changed fields; the run's first step stores the spec.
        assert config == {
            "ops": {"experiment_spec": {"config": {"preset": "smoke", "changes": {"training.epochs": 3}}}}
        }
        assert prepare_experiment_run(instance, "epochs-3", None, {}) == {
            "ops": {"experiment_spec": {"config": {"changes": {}}}}
        }
        with pytest.raises(ValueError, match="experiment must be 1-63 characters"):
            prepare_experiment_run(instance, "Not A Name", "smoke", {})
        assert experiment_names(instance) == ["lr-2e-5", "epochs-3"]


@pytest.fixture
def two_reports():
    """An instance holding the reports of experiments `small-gain` and `big-gain` against one baseline."""
    base = {"scifact": scores(50, 0.6, seed=10), "heldout": scores(8, 0.4, seed=11)}
    baseline = evaluation("base", base)
    fine_tuned = {
        "small-gain": evaluation("ns/small-gain-embed-sft@cust-1", {t: shifted(qs, 0.0, 12) for t, qs in base.items()}),
        "big-gain": evaluation("ns/big-gain-embed-sft@cust-2", {t: shifted(qs, 0.08, 13) for t, qs in base.items()}),
    }
    with DagsterInstance.ephemeral() as instance:
        results = materialize_reports(instance, baseline, fine_tuned)
        yield instance, results


def test_each_experiment_has_its_own_report_history_with_chart_table_and_significance(two_reports):
    instance, results = two_reports
    for experiment in ("small-gain", "big-gain"):
        mat = instance.fetch_materializations(AssetKey("evaluation_report"), limit=5).records
        assert {r.partition_key for r in mat} == {"small-gain", "big-gain"}
        report = results[experiment].output_for_node("evaluation_report")
        assert report.experiment == experiment
        metadata = results[experiment].asset_materializations_for_node("evaluation_report")[0].metadata
        # Stable float keys (plotted by the UI), the chart as an embedded PNG, the report as a typed table.
        assert isinstance(metadata["scifact/ndcg_cut_10/fine_tuned"].value, float)
        assert metadata["scifact/queries"].value == 50.0
        assert metadata["heldout/queries"].value == 8.0
        chart = metadata["chart"].value
        assert chart.startswith("![baseline vs fine-tuned](data:image/png;base64,")
        assert base64.b64decode(chart.split(",", 1)[1].rstrip(")")).startswith(PNG_SIGNATURE)
        table = metadata["report_table"].value
        assert [c.name for c in table.schema.columns][:6] == [
            "task",
            "metric",
            "baseline",
            "fine_tuned",
            "delta",
            "relative_delta",
        ]
        assert {r.data["task"] for r in table.records} == {"scifact", "heldout"}
        # The held-out task rests on 8 queries: flagged, not a full claim.
        assert metadata["heldout/verdict"].value == TOO_FEW
        assert "too few to support a claim" in metadata["report"].value

    big = results["big-gain"].get_asset_check_evaluations()
    small = results["small-gain"].get_asset_check_evaluations()
    assert [e.check_name for e in big] == [CHECK_NAME]
    assert big[0].passed is True
    assert "No claim on: heldout" in big[0].description
    assert small[0].passed is False
    assert "Not significantly better on: scifact" in small[0].description


# The leaderboard with its upstream report (whose own inputs are only sources here): only the leaderboard runs.
LEADERBOARD_GRAPH = [
    SourceAsset("baseline_evaluation"),
    SourceAsset("fine_tuned_evaluation", partitions_def=EXPERIMENTS),
    evaluation_report,
    experiment_leaderboard,
]


def test_leaderboard_is_one_row_per_experiment_built_from_the_report_values(two_reports):
    instance, results = two_reports
    reports = latest_reports(instance)  # the stored Report values, through the IO manager
    assert {name: r.fine_tuned_model for name, r in reports.items()} == {
        "small-gain": "ns/small-gain-embed-sft@cust-1",
        "big-gain": "ns/big-gain-embed-sft@cust-2",
    }
    rows = leaderboard_rows(reports)
    assert [r.experiment for r in rows] == ["big-gain", "small-gain"]  # best first on the first task (scifact)
    big = rows[0].scores
    assert sorted(big) == ["heldout", "scifact"]
    expected = next(r for r in reports["big-gain"].rows if (r.task, r.metric) == ("scifact", "ndcg_cut_10"))
    assert (big["scifact"].baseline, big["scifact"].fine_tuned) == (expected.baseline, expected.fine_tuned)
    assert big["scifact"].queries == 50
    assert big["scifact"].p_value is not None
    assert big["scifact"].p_value < 0.05
    assert big["heldout"].verdict == TOO_FEW
    printed = leaderboard_markdown(rows).splitlines()
    assert printed[0] == "| experiment | scifact (change, p) | heldout (change, p) | model | date |"
    assert printed[2].startswith("| (baseline) |")
    assert printed[3].startswith(f"| big-gain | {big['scifact'].fine_tuned:.4f} (+")

    # The asset receives the same values from its partitioned upstream: one typed row per experiment.
    result = materialize(LEADERBOARD_GRAPH, instance=instance, selection=[experiment_leaderboard])
    assert result.success
    metadata = result.asset_materializations_for_node("experiment_leaderboard")[0].metadata
    table = metadata["leaderboard"].value
    assert [c.name for c in table.schema.columns] == [
        "experiment",
        "scifact",
        "scifact change",
        "scifact p",
        "heldout",
        "heldout change",
        "heldout p",
        "model",
        "date",
    ]
    assert [r.data["experiment"] for r in table.records] == ["big-gain", "small-gain"]
    assert table.records[0].data["scifact"] == round(big["scifact"].fine_tuned, 4)
    assert table.records[0].data["date"] == reports["big-gain"].created_at != ""
    assert metadata["best_experiment"].value == "big-gain"
    assert metadata["experiments"].value == 2

    # With one experiment the IO manager hands the value itself, with none nothing: the same rows either way.
    assert reports_by_experiment(reports["big-gain"], ["big-gain"]) == {"big-gain": reports["big-gain"]}
    assert reports_by_experiment(None, []) == {}

    # An experiment registered without a report yet is simply absent.
    add_experiment(instance, "no-report-yet")
    again = materialize(LEADERBOARD_GRAPH, instance=instance, selection=[experiment_leaderboard])
    assert again.asset_materializations_for_node("experiment_leaderboard")[0].metadata["experiments"].value == 2


def test_loss_curve_renders_train_and_validation():
    png = loss_curve_png({"train_loss": [(1, 0.9), (2, 0.7), (3, 0.6)], "val_loss": [(3, 0.65)]})
    assert png.startswith(PNG_SIGNATURE)
    assert len(png) < 60_000
    assert loss_curve_png({"train_loss": [], "val_loss": []}) is None
    assert markdown_image(png, "loss").startswith("![loss](data:image/png;base64,iVBOR")


def test_local_evaluator_results_carry_the_per_query_scores_of_the_requested_metrics():
    """The platform's results document (additive `per_query` field) is what `per_query_scores` reads."""
    doc = nemo_results(
        "eval-1",
        "res-1",
        "hf://datasets/evaluation-results/eval-1",
        {"scifact": {"ndcg_cut_10": 0.75}},
        {"scifact": {"q1": {"ndcg_cut_10": 0.5, "map": 0.1}, "q2": {"ndcg_cut_10": 1.0, "map": 0.2}}},
    )
    assert doc["tasks"]["scifact"]["metrics"]["retriever.ndcg_cut_10"]["scores"]["ndcg_cut_10"]["value"] == 0.75
    assert per_query_scores(doc) == {"scifact": {"q1": {"ndcg_cut_10": 0.5}, "q2": {"ndcg_cut_10": 1.0}}}
    without = nemo_results("eval-2", "res-2", "hf://x", {"scifact": {"ndcg_cut_10": 0.75}})
    assert "per_query" not in without["tasks"]["scifact"]
