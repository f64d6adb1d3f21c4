"""`embed-ft`: run the lineage headless, open the UI, read reports, manage the local platform.

State lives where `homes.py` says (the project's `.embed_ft/` from any folder of a checkout, unless DAGSTER_HOME,
EMBED_FT_HOME or EMBED_FT_DATA_ROOT are set). `run` checks everything first (`defs/preflight.py`), then materializes
the lineage with Dagster's own logging silenced and prints what `console.py` makes of the run's events.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterator, Optional, TextIO

import click
from dagster import DagsterInstance

from .console import RunConsole, error_text
from .definitions import defs
from .defs.experiments import prepare_experiment_run, validate_experiment_name
from .defs.leaderboard import leaderboard_markdown, leaderboard_rows
from .defs.preflight import Problem, initialized, preflight_problems
from .defs.report_metadata import results_lines
from .foreground import run_foreground
from .history import REPORT_ASSET, history_line, latest_reports, latest_table, report_history
from .homes import Homes, apply_default_homes, fill_preset_data, preset_data_dir
from .nemo.errors import NemoError
from .nemo.http import ServiceHTTP
from .platform.cli import platform_group
from .platform.launcher import ensure_running, status as platform_status
from .platform.settings import PlatformSettings
from .presets import DEFAULT_PRESET, PRESETS
from .resources import DEFAULT_NAMESPACE, resources_from_env

LINEAGE_JOB = "full_lineage_job"
QUIET_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}
SILENT_LOGGERS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def ensure_dagster_home() -> Path:
    """A persistent DAGSTER_HOME (run and metric history survive restarts), the same from any project folder."""
    return apply_default_homes().dagster_home


def lineage_run_config(
    *,
    source: Optional[str] = None,
    revision: Optional[str] = None,
    sample_size: Optional[int] = None,
    validation_size: Optional[float] = None,
    test_size: Optional[int] = None,
    seed: Optional[int] = None,
    experiment: Optional[str] = "default",  # None: a partitioned job takes it from the partition key
    tasks: Optional[list[str]] = None,
    include_heldout: bool = True,
    epochs: Optional[int] = None,
    batch_size: Optional[int] = None,
    learning_rate: Optional[float] = None,
    max_steps: Optional[int] = None,
    warmup_steps: Optional[int] = None,
    max_seq_length: Optional[int] = None,
    poll_interval_s: Optional[float] = None,
) -> dict[str, Any]:
    """Run config of full_lineage_job from run options; unset options keep the Config defaults."""

    def pick(**kw: Any) -> dict[str, Any]:
        return {k: v for k, v in kw.items() if v is not None}

    ops: dict[str, Any] = {
        "specter_raw": pick(source=source, revision=revision),
        "specter_triplets": pick(sample_size=sample_size, validation_size=validation_size, test_size=test_size, seed=seed),
        "fine_tuned_model": pick(
            experiment=experiment, epochs=epochs, batch_size=batch_size, learning_rate=learning_rate,
            max_steps=max_steps, warmup_steps=warmup_steps, max_seq_length=max_seq_length,
            poll_interval_s=poll_interval_s,
        ),
        "fine_tuned_nim": pick(experiment=experiment, poll_interval_s=poll_interval_s),
        "baseline_nim": pick(experiment=experiment, poll_interval_s=poll_interval_s),
    }
    # Dagster's config schema wants a list; click's `multiple=True` gives a tuple.
    evaluation = pick(tasks=list(tasks) if tasks else None, include_heldout=include_heldout, poll_interval_s=poll_interval_s)
    ops["baseline_evaluation"] = dict(evaluation)
    ops["fine_tuned_evaluation"] = dict(evaluation)
    return {"ops": {name: {"config": cfg} for name, cfg in ops.items() if cfg}}


def run_options(preset: str, options: dict[str, Any]) -> dict[str, Any]:
    """The preset's settings, overridden by every option given on the command line."""
    chosen = PRESETS[preset].options(str(preset_data_dir()))
    given = {key: value for key, value in options.items() if value is not None and value != ()}
    return {**chosen, **given}


@contextlib.contextmanager
def quiet(log_path: Path) -> Iterator[None]:
    """Everything libraries print (progress bars, warnings, stray prints) goes to ``log_path``, not the terminal."""
    saved = {key: os.environ.get(key) for key in QUIET_ENV}
    os.environ.update(QUIET_ENV)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", encoding="utf-8") as log, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
            try:
                yield
            finally:
                for key, value in saved.items():
                    if value is None:
                        os.environ.pop(key, None)
                    else:
                        os.environ[key] = value


def _platform_lines(state: dict) -> list[str]:
    if not state["running"]:
        return []
    return [f"  local platform {state['url']} (pid {state['pid']}) -> stop: embed-ft platform stop"]


def still_running_lines() -> list[str]:
    """What holds resources after a run (the local platform, NIM deployments) and the command that stops each.

    Asks only what is already up: a stopped local platform is not started to be asked."""
    lines = []
    nemo_url = os.environ.get("NEMO_URL")
    state = platform_status(PlatformSettings())
    lines += _platform_lines(state)
    url = nemo_url or (state["url"] if state["healthy"] else None)
    if url:
        namespace = os.environ.get("NEMO_NAMESPACE") or DEFAULT_NAMESPACE
        try:
            answer = ServiceHTTP(url, "deployment", token=os.environ.get("NEMO_TOKEN") or None).get(
                "/v1/deployment/model-deployments"
            )
            deployments = [d for d in (answer or {}).get("data", []) if d.get("namespace") == namespace]
        except NemoError as exc:
            deployments = []
            lines.append(f"  (could not list deployments: {exc})")
        for d in deployments:
            status = (d.get("status_details") or {}).get("status") or d.get("status") or "?"
            lines.append(f"  deployment {d.get('namespace')}/{d.get('name')} ({status}) -> stop: embed-ft teardown")
    if not lines:
        return ["nothing is left running"]
    return ["still running (holding resources):", *lines]


def _header(out: TextIO, preset: str, options: dict[str, Any], homes: Homes) -> None:
    chosen = PRESETS[preset]
    out.write(f"embed-ft run --preset {preset}: {chosen.summary}\n")
    tasks = ", ".join(options.get("tasks") or ["the backend's default"])
    out.write(f"  trains on {options.get('source')}, evaluates on {tasks}; expect {chosen.expect}\n")
    out.write(f"  {homes.lines()[0]}\n")
    out.flush()


def _launch(job, run_config: dict, experiment: str, instance: DagsterInstance, run_id: str, verbose: bool):
    partition_key = None
    if job.partitions_def is not None:  # experiments are partitions (defs/experiments.py)
        run_config = prepare_experiment_run(instance, experiment, run_config)
        partition_key = experiment
    if not verbose:
        run_config = {**run_config, **SILENT_LOGGERS}
    return job.execute_in_process(
        run_config=run_config, instance=instance, raise_on_error=False, run_id=run_id, partition_key=partition_key
    )


@click.group()
@click.version_option(package_name="embed-ft", prog_name="embed-ft")
def main() -> None:
    """embed-ft: fine-tune embedding models on NeMo (or the embedded local platform) and prove the gain."""


@main.command()
@click.option("--preset", type=click.Choice(sorted(PRESETS)), default=DEFAULT_PRESET, show_default=True,
              help="Named settings (see the README); every option below overrides the preset's value.")
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
@click.option("--warmup-steps", type=int, help="Learning-rate warm-up steps (then linear decay).")
@click.option("--max-seq-length", type=int)
@click.option("--poll-interval", "poll_interval_s", type=float, help="Seconds between remote status polls.")
@click.option("--dry-run", is_flag=True, help="Check config, source and tasks, print the run config, launch nothing.")
@click.option("-v", "--verbose", is_flag=True, help="Dagster's event log and full tracebacks.")
def run(preset: str, experiment: str, no_heldout: bool, dry_run: bool, verbose: bool, **options: Any) -> None:
    """Check, then materialize the whole lineage headless and print the results."""
    out = sys.stdout  # captured before `quiet` redirects it
    homes = apply_default_homes()
    settings = run_options(preset, options)
    job = defs.resolve_job_def(LINEAGE_JOB)
    partitioned = job.partitions_def is not None
    run_config = lineage_run_config(
        **settings, experiment=None if partitioned else experiment, include_heldout=not no_heldout
    )
    _header(out, preset, settings, homes)
    data_line, data_problem = fill_preset_data(settings.get("source"), download=not dry_run)
    out.write(f"  {data_line}\n" if data_line else "")
    try:
        validate_experiment_name(experiment)
        problems = preflight_problems(job, run_config, initialized(resources_from_env()))
    except ValueError as exc:
        problems = [Problem("config", f"--experiment: {exc}", "choose another experiment name")]
    if data_problem:
        problems.insert(0, Problem(f"source {settings.get('source')}", data_problem, "see the line above"))
    if problems:
        out.write(f"preflight: {len(problems)} problem(s); nothing was created or started:\n")
        out.write("".join(f"  {problem.line()}\n" for problem in problems))
        out.write("\n".join(still_running_lines()) + "\n")
        raise SystemExit(2)
    if dry_run:
        out.write("preflight passed; run config (nothing launched, --dry-run):\n" + json.dumps(run_config) + "\n")
        return
    run_id = str(uuid.uuid4())  # known before launch, so the console can listen to this run's events
    log_path = homes.dagster_home / "last_run.log"
    started = time.monotonic()
    with DagsterInstance.get() as instance, RunConsole(out, tty=False if verbose else None) as console:
        instance.add_event_listener(run_id, console.handle)
        if verbose:
            result = _launch(job, run_config, experiment, instance, run_id, verbose)
        else:
            with quiet(log_path):
                result = _launch(job, run_config, experiment, instance, run_id, verbose)
        console.summary(result.success, time.monotonic() - started)
    if verbose:
        for event in result.all_events:
            if event.is_step_failure:
                out.write(f"{event.step_key}: {event.step_failure_data.error.to_string()}\n")
    elif not result.success and not console.failures:
        failure = next((e for e in result.all_events if e.event_type_value == "RUN_FAILURE"), None)
        reason = error_text(failure.event_specific_data.error) if failure and failure.event_specific_data.error else "see the log"
        console.failure("run", reason, f"rerun with -v, or read {log_path}")
    if result.success:
        report = result.output_for_node(REPORT_ASSET)
        out.write("\nresults (test queries never seen in training; heldout = train queries kept out):\n")
        out.write("".join(f"  {line}\n" for line in results_lines(report.rows, report.tests)))
    out.write(f"run {run_id} in {homes.dagster_home}; embed-ft report shows it again\n")
    out.write("\n".join(still_running_lines()) + "\n")
    raise SystemExit(0 if result.success else 1)


@main.command()
@click.option("--history/--latest", default=True, help="Also print the metric history of every past report.")
@click.option("--metric", default="ndcg_cut_10", show_default=True, help="Metric shown in the history.")
@click.option("--experiments", "leaderboard", is_flag=True, help="Print the leaderboard: every experiment's latest report.")
def report(history: bool, metric: str, leaderboard: bool) -> None:
    """Print the latest evaluation report and the history of every report, from the Dagster instance."""
    homes = apply_default_homes()
    with DagsterInstance.get() as instance:
        entries = report_history(instance)
        board = leaderboard_rows(latest_reports(instance), metric) if leaderboard else []
    if not entries:
        raise click.ClickException(
            f"no {REPORT_ASSET} yet in {homes.dagster_home} (the history, DAGSTER_HOME). "
            "Create one with: embed-ft run   (or ./dev run; --preset smoke for a quick check)"
        )
    latest = entries[-1]
    if leaderboard:
        click.echo(f"leaderboard ({metric}, every experiment's latest report):")
        click.echo(leaderboard_markdown(board))
        click.echo(f"\nhistory lives in {homes.dagster_home}")
        return
    click.echo(f"latest report: {latest.date}, experiment {latest.experiment}, run {latest.run_id}")
    click.echo("\n".join(f"  {line}" for line in latest_table(latest)))
    if history:
        click.echo(f"\nhistory of {metric} (baseline -> fine-tuned), oldest first:")
        click.echo("\n".join(history_line(entry, metric) for entry in entries))
    click.echo(f"\nhistory lives in {homes.dagster_home}")


@main.command()
@click.option("--experiment", "experiments", multiple=True, help="Experiment whose NIMs are deleted (repeatable).")
def teardown(experiments: tuple[str, ...]) -> None:
    """Delete NIM deployments (they hold GPUs): runs teardown_deployments_job."""
    apply_default_homes()
    job = defs.resolve_job_def("teardown_deployments_job")
    ops = [node.name for node in job.graph.nodes]
    run_config = {"ops": {ops[0]: {"config": {"experiments": list(experiments)}}}} if experiments else {}
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(run_config={**run_config, **SILENT_LOGGERS}, instance=instance, raise_on_error=False)
    for event in result.all_events:
        if event.is_step_failure:
            click.echo(f"FAILED {event.step_key}: {error_text(event.step_failure_data.error)}", err=True)
    click.echo("teardown " + ("done" if result.success else "FAILED"))
    click.echo("\n".join(still_running_lines()))
    raise SystemExit(0 if result.success else 1)


@main.command()
@click.option("--port", default=3000, show_default=True)
def ui(port: int) -> None:
    """Start the local platform (if no NeMo URLs are set) and `dg dev` (Dagster webserver + daemon) on 127.0.0.1."""
    ensure_dagster_home()
    if not os.environ.get("NEMO_URL"):
        click.echo(f"local platform: {ensure_running(PlatformSettings())}")
    # In a checkout, the dg project of pyproject.toml ([tool.dg], code location `embed_ft`); elsewhere, the module.
    root = Path(__file__).resolve().parents[1]
    in_checkout = (root / "pyproject.toml").is_file() and (root / "workspace.yaml").is_file()
    target = ["--target-path", str(root)] if in_checkout else ["-m", "embed_ft.definitions"]
    dg = Path(sys.executable).with_name("dg")
    cmd = [str(dg) if dg.is_file() else "dg", "dev", *target, "--use-active-venv", "--host", "127.0.0.1", "--port", str(port)]
    env = dict(os.environ)
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix  # the code server runs in this interpreter's environment
    # Ctrl-C, SIGTERM and SIGHUP stop dg dev and the webserver, daemon and code servers it starts alike.
    raise SystemExit(run_foreground(cmd, env=env, cwd=root if in_checkout else None))


main.add_command(platform_group)


if __name__ == "__main__":
    main()
