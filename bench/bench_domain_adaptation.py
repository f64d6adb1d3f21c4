"""Quality gained, locally: a real domain-adaptation proof (issue 6, item 4).

The full Dagster lineage runs on the local platform: the data stage turns SciFact's **train** split (queries +
corpus + train qrels) into triplets (positive = the judged document, negatives mined with the base model by the
`mined_triplets` asset: sentence-transformers' mine_hard_negatives, its Launchpad settings), the Customizer
fine-tunes all-MiniLM-L6-v2 on them, and the Evaluator scores
baseline and fine-tuned NIMs on SciFact's **test** queries (disjoint from the train queries) and on an
out-of-domain task. Never tune on test queries: every knob here is chosen before looking at test figures.

Out-of-domain task: no second complete BEIR set is on these machines (SciDocs has no corpus here), so the real
SPECTER sample (citation prediction over paper titles, ../shared/data/specter-sample) is turned into a BEIR set.

    python bench/bench_domain_adaptation.py [--epochs 1] [--learning-rate 2e-5] [--negatives 1] ...

Prints a table and ONE JSON line with training rows, steps, wall times and every metric.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import SHARED_DATA, machine_info, offline_hub, platform_subprocess, print_json_line  # noqa: E402


def build_ood_set(beir_root: Path) -> Path:
    """The SPECTER sample as a BEIR set: queries = paper titles, corpus = cited and negative titles."""
    from embed_ft.data.beir import testing_split_to_beir
    from embed_ft.formats.nemo_jsonl import dumps_row

    rows = [json.loads(line) for line in (SHARED_DATA / "specter-sample" / "s2orc_citation_triplets.jsonl").open()]
    with tempfile.TemporaryDirectory() as tmp:
        nemo = Path(tmp) / "testing.jsonl"
        nemo.write_text("".join(dumps_row(r["set"][0], r["set"][1], [r["set"][2]]) for r in rows), encoding="utf-8")
        out = beir_root / "specter-ood"
        testing_split_to_beir(nemo, out)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=2e-5)
    parser.add_argument(
        "--negatives",
        type=int,
        default=None,
        help="hard negatives mined per training row (default: mined_triplets' default)",
    )
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--warmup-steps", type=int, default=0, help="learning-rate warm-up steps, then linear decay")
    parser.add_argument("--test-size", type=int, default=80, help="train queries held out (in-domain held-out task)")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument(
        "--finetuning-type",
        choices=("all_weights", "lora", "lora_merged"),
        default="all_weights",
        help="all_weights, or a PEFT LoRA adapter (lora: served on its base; lora_merged: merged)",
    )
    parser.add_argument("--lora-adapter-dim", type=int, default=8, help="LoRA rank (lora/lora_merged)")
    parser.add_argument("--lora-alpha", type=int, default=16, help="LoRA alpha (lora/lora_merged)")
    parser.add_argument("--home", help="platform home to reuse (default: a new temporary folder, kept afterwards)")
    args = parser.parse_args()
    offline_hub()

    from dagster import DagsterInstance, materialize

    from embed_ft.definitions import defs, lineage_assets
    from embed_ft.defs.experiments import prepare_experiment_run
    from embed_ft.resources import resources_for_url

    scifact = SHARED_DATA / "beir" / "scifact"
    # --home reuses a previous run's platform: an identical customization job is then reattached, not retrained.
    home = Path(args.home) if args.home else Path(tempfile.mkdtemp(prefix="embed-ft-domain-"))
    beir_root = home / "beir"
    beir_root.mkdir(parents=True, exist_ok=True)
    # A copy in the temporary home (the evaluator refuses paths that resolve outside its BEIR root, symlinks too).
    if (beir_root / "scifact").is_symlink():
        (beir_root / "scifact").unlink()
    if not (beir_root / "scifact").exists():
        shutil.copytree(scifact, beir_root / "scifact")
    build_ood_set(beir_root)
    print(f"platform home: {home}", file=sys.stderr)
    os.environ["EMBED_FT_BEIR_ROOT"] = str(beir_root)
    os.environ["EMBED_FT_DATA_ROOT"] = str(home / "data")

    poll = {"poll_interval_s": 2.0}
    # One experiment (partition) per fine-tuning type, so that runs of several types can share one home and baseline.
    experiment = (
        "scifact-adapt"
        if args.finetuning_type == "all_weights"
        else f"scifact-{args.finetuning_type.replace('_', '-')}"
    )
    evaluation = {"tasks": ["file://scifact/", "file://specter-ood/"], **poll}
    run_config = {
        "ops": {
            "specter_raw": {"config": {"source": str(scifact), "source_kind": "beir", "split": "train"}},
            "mined_triplets": {"config": {} if args.negatives is None else {"num_negatives": args.negatives}},
            "specter_triplets": {
                "config": {
                    "sample_size": None,
                    "sample_fraction": 1.0,
                    "test_size": args.test_size,
                    "validation_size": 0.05,
                    "seed": args.seed,
                }
            },
            "fine_tuned_model": {
                "config": {
                    "experiment": experiment,
                    "epochs": args.epochs,
                    "batch_size": args.batch_size,
                    "learning_rate": args.learning_rate,
                    "max_seq_length": args.max_seq_length,
                    "warmup_steps": args.warmup_steps,
                    "seed": args.seed,
                    "finetuning_type": args.finetuning_type,
                    "lora": {"adapter_dim": args.lora_adapter_dim, "alpha": args.lora_alpha},
                    **poll,
                }
            },
            "fine_tuned_nim": {"config": {"experiment": experiment, **poll}},
            "baseline_nim": {"config": {"experiment": experiment, **poll}},
            "baseline_evaluation": {"config": evaluation},
            "fine_tuned_evaluation": {"config": evaluation},
        }
    }
    started = time.monotonic()
    with platform_subprocess(home / "platform") as url:
        instance = DagsterInstance.ephemeral()
        run_config = prepare_experiment_run(instance, experiment, run_config)
        result = materialize(
            [*lineage_assets, *(defs.asset_checks or [])],
            resources=resources_for_url(url),
            run_config=run_config,
            instance=instance,
            partition_key=experiment,
            raise_on_error=False,
        )
        if not result.success:
            for event in result.all_events:
                if event.is_step_failure:
                    print(f"FAILED {event.step_key}: {event.event_specific_data.error.message}", file=sys.stderr)
            raise SystemExit(1)
        wall = time.monotonic() - started
        triplets = result.output_for_node("specter_triplets")
        report = result.output_for_node("evaluation_report")
        from dagster import AssetKey

        ft_meta = instance.get_latest_materialization_event(AssetKey("fine_tuned_model")).asset_materialization.metadata
        step_times = {}
        for event in instance.all_logs(result.run_id):
            dagster_event = event.dagster_event
            if dagster_event and dagster_event.is_step_success:
                step_times[dagster_event.step_key] = round(dagster_event.event_specific_data.duration_ms / 1000, 1)

    print(report.markdown)
    metrics = {
        f"{r.task}/{r.metric}": {
            k: round(getattr(r, k), 5) for k in ("baseline", "fine_tuned", "delta", "relative_delta")
        }
        for r in report.rows
    }
    figures = {
        "benchmark": "bench_domain_adaptation",
        "machine": machine_info(),
        "args": vars(args),
        "training_rows": triplets.rows,
        "steps": ft_meta["steps_completed"].value if "steps_completed" in ft_meta else None,
        "train_loss_final": ft_meta["train_loss_final"].value if "train_loss_final" in ft_meta else None,
        "training_duration_s": ft_meta["duration_s"].value if "duration_s" in ft_meta else None,
        "step_wall_s": step_times,
        "lineage_wall_s": round(wall, 1),
        "scifact_ndcg10_relative_gain": metrics.get("scifact/ndcg_cut_10", {}).get("relative_delta"),
        "ood_ndcg10_relative_change": metrics.get("specter-ood/ndcg_cut_10", {}).get("relative_delta"),
        "metrics": metrics,
    }
    print_json_line(figures)


if __name__ == "__main__":
    main()
