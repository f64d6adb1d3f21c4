"""`embed-ft`: run the lineage headless, open the UI, read reports, manage the local platform."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import click
from dagster import AssetKey, AssetRecordsFilter, DagsterInstance

from .definitions import defs
from .defs.common import invalid_run_config
from .platform.cli import platform_group
from .platform.launcher import ensure_running
from .platform.settings import PlatformSettings

REPORT_ASSET = "evaluation_report"


def ensure_dagster_home() -> Path:
    """A persistent DAGSTER_HOME (run and metric history survive restarts): $DAGSTER_HOME or ./.embed_ft/dagster_home."""
    home = Path(os.environ.get("DAGSTER_HOME") or Path.cwd() / ".embed_ft" / "dagster_home").resolve()
    home.mkdir(parents=True, exist_ok=True)
    os.environ["DAGSTER_HOME"] = str(home)
    dagster_yaml = home / "dagster.yaml"
    if not dagster_yaml.exists():
        # Pools: one job at a time per GPU service, so concurrent runs cannot oversubscribe it.
        dagster_yaml.write_text(
            "concurrency:\n  pools:\n    default_limit: 1\n"
            "telemetry:\n  enabled: false\n"
        )
    return home


def lineage_run_config(
    *,
    source: Optional[str] = None,
    revision: Optional[str] = None,
    sample_size: Optional[int] = None,
    validation_size: Optional[float] = None,
    test_size: Optional[int] = None,
    seed: Optional[int] = None,
    experiment: str = "default",
    tasks: Optional[list[str]] = None,
    include_heldout: bool = True,
    epochs: Optional[int] = None,
    batch_size: Optional[int] = None,
    learning_rate: Optional[float] = None,
    max_steps: Optional[int] = None,
    max_seq_length: Optional[int] = None,
    poll_interval_s: Optional[float] = None,
) -> dict[str, Any]:
    """Run config of full_lineage_job from CLI options; unset options keep the Config defaults."""

    def pick(**kw: Any) -> dict[str, Any]:
        return {k: v for k, v in kw.items() if v is not None}

    ops: dict[str, Any] = {
        "specter_raw": pick(source=source, revision=revision),
        "specter_triplets": pick(sample_size=sample_size, validation_size=validation_size, test_size=test_size, seed=seed),
        "fine_tuned_model": pick(
            experiment=experiment,
            epochs=epochs,
            batch_size=batch_size,
            learning_rate=learning_rate,
            max_steps=max_steps,
            max_seq_length=max_seq_length,
            poll_interval_s=poll_interval_s,
        ),
        "fine_tuned_nim": pick(experiment=experiment, poll_interval_s=poll_interval_s),
        "baseline_nim": pick(experiment=experiment, poll_interval_s=poll_interval_s),
    }
    evaluation = pick(tasks=tasks or None, include_heldout=include_heldout, poll_interval_s=poll_interval_s)
    ops["baseline_evaluation"] = dict(evaluation)
    ops["fine_tuned_evaluation"] = dict(evaluation)
    return {"ops": {name: {"config": cfg} for name, cfg in ops.items() if cfg}}


def latest_report(instance) -> list[dict[str, Any]]:
    """Every materialization of evaluation_report, oldest first: {run_id, timestamp, metadata}."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(REPORT_ASSET)), limit=1000, ascending=True
    ).records
    history = []
    for record in records:
        mat = record.asset_materialization
        history.append(
            {
                "run_id": record.run_id,
                "timestamp": record.timestamp,
                "metadata": {k: v.value for k, v in (mat.metadata or {}).items()},
            }
        )
    return history


@click.group()
def main() -> None:
    """embed-ft: fine-tune embedding models on NeMo (or the embedded local platform) and prove the gain."""


@main.command()
@click.option("--source", help="Training source: HF dataset id, local file/folder (SPECTER layout) or BEIR folder.")
@click.option("--revision", help="Hub revision of the source.")
@click.option("--sample-size", type=int, help="Rows sampled for train+validation.")
@click.option("--validation-size", type=float, help="Validation size (fraction < 1, or row count).")
@click.option("--test-size", type=int, help="Held-out test rows (taken before the train/validation split).")
@click.option("--seed", type=int)
@click.option("--experiment", default="default", show_default=True)
@click.option("--task", "tasks", multiple=True, help="BEIR task files_url (repeatable), e.g. file://scifact/.")
@click.option("--no-heldout", is_flag=True, help="Skip the held-out in-domain task.")
@click.option("--epochs", type=int)
@click.option("--batch-size", type=int)
@click.option("--learning-rate", type=float)
@click.option("--max-steps", type=int)
@click.option("--max-seq-length", type=int)
@click.option("--poll-interval", "poll_interval_s", type=float, help="Seconds between remote status polls.")
def run(**options: Any) -> None:
    """Materialize the whole lineage headless and print the report."""
    ensure_dagster_home()
    include_heldout = not options.pop("no_heldout")
    run_config = lineage_run_config(**options, include_heldout=include_heldout)
    problems = invalid_run_config(defs.resolve_job_def("full_lineage_job"), run_config)
    if problems:
        raise click.UsageError("invalid run config, nothing was started:\n  " + "\n  ".join(problems))
    click.echo(f"DAGSTER_HOME={os.environ['DAGSTER_HOME']}", err=True)
    click.echo("run config: " + json.dumps(run_config), err=True)
    with DagsterInstance.get() as instance:
        result = defs.resolve_job_def("full_lineage_job").execute_in_process(
            run_config=run_config, instance=instance, raise_on_error=False
        )
        if not result.success:
            for event in result.all_events:
                if event.is_step_failure:
                    click.echo(f"FAILED {event.step_key}: {event.event_specific_data.error.message.strip()}", err=True)
            raise SystemExit(1)
        report = result.output_for_node(REPORT_ASSET)
    click.echo(report.markdown)


@main.command()
@click.option("--history/--latest", default=True, help="Also print the metric history of every past report.")
@click.option("--metric", default="ndcg_cut_10", show_default=True, help="Metric shown in the history.")
def report(history: bool, metric: str) -> None:
    """Print the latest evaluation report and the metric history from the Dagster instance."""
    ensure_dagster_home()
    with DagsterInstance.get() as instance:
        records = latest_report(instance)
    if not records:
        raise click.ClickException(f"No {REPORT_ASSET} materialization in DAGSTER_HOME={os.environ['DAGSTER_HOME']}")
    click.echo(records[-1]["metadata"].get("report", ""))
    if history:
        click.echo(f"\nHistory of */{metric}/(baseline, fine_tuned):")
        for rec in records:
            meta = rec["metadata"]
            cells = [
                f"{key.split('/')[0]}: {meta[key]:.4f} -> {meta[key.replace('/baseline', '/fine_tuned')]:.4f}"
                for key in sorted(meta)
                if key.endswith(f"/{metric}/baseline") and key.replace("/baseline", "/fine_tuned") in meta
            ]
            click.echo(f"- run {rec['run_id'][:8]}: " + "; ".join(cells))


@main.command()
@click.option("--port", default=3000, show_default=True)
def ui(port: int) -> None:
    """Start the local platform (if no NeMo URLs are set) and the Dagster webserver + daemon on 127.0.0.1."""
    ensure_dagster_home()
    if not os.environ.get("NEMO_URL"):
        click.echo(f"local platform: {ensure_running(PlatformSettings())}")
    # The workspace file names the code location `embed_ft` (as pyproject.toml does); outside a checkout, the module.
    workspace = Path(__file__).resolve().parents[1] / "workspace.yaml"
    target = ["-w", str(workspace)] if workspace.is_file() else ["-m", "embed_ft.definitions"]
    cmd = [sys.executable, "-m", "dagster", "dev", *target, "-h", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, start_new_session=True)
    try:
        raise SystemExit(proc.wait())
    except KeyboardInterrupt:
        # dagster dev stops its webserver and daemon on SIGINT; wait for it so no child is orphaned.
        os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


main.add_command(platform_group)


if __name__ == "__main__":
    main()
