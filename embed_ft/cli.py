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

from .backends import BACKEND_HELP, BACKENDS, ENV, helix_group, still_running_lines, use_backend
from .console import RunConsole, error_text
from .definitions import build_defs
from .defs.backend import backend_defaults
from .defs.experiment_spec import spec_history, stored_spec
from .defs.experiments import experiment_names, prepare_experiment_run, validate_experiment_name
from .defs.leaderboard import leaderboard_markdown, leaderboard_rows
from .defs.preflight import Problem, initialized, preflight_problems
from .defs.report_metadata import results_lines
from .foreground import run_foreground
from .history import REPORT_ASSET, history_line, history_place, latest_reports, latest_table, report_history
from .homes import Homes, apply_default_homes, fill_preset_data
from .platform.cli import platform_group
from .platform.launcher import ensure_running
from .platform.settings import PlatformSettings
from .profiles import BackendProfile, get_profile
from .resources import resources_from_env
from .run_options import add_spec_options, changes_from_params
from .spec.changes import SpecError, apply_changes, differences, flat, spec_version
from .spec.experiment import ExperimentSpec
from .spec.presets import DEFAULT_PRESET, PRESETS, preset_spec

LINEAGE_JOB = "full_lineage_job"
QUIET_ENV = {"TQDM_DISABLE": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "TRANSFORMERS_VERBOSITY": "error"}
SILENT_LOGGERS = {"loggers": {"console": {"config": {"log_level": "CRITICAL"}}}}


def ensure_dagster_home() -> Path:
    """A persistent DAGSTER_HOME (run and metric history survive restarts), the same from any project folder."""
    return apply_default_homes().dagster_home


def build_run_spec(preset: str, changes: dict[str, Any], profile: BackendProfile) -> ExperimentSpec:
    """Exactly the spec a run uses: the preset's on ``profile``, with the options given; SpecError names a field."""
    return apply_changes(preset_spec(preset, profile), changes)


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


def _header(out: TextIO, preset: str, spec: Optional[ExperimentSpec], experiment: str, homes: Homes) -> None:
    chosen = PRESETS[preset]
    out.write(f"embed-ft run --preset {preset}: {chosen.summary}\n")
    if spec is not None:
        tasks = ", ".join(spec.evaluation.tasks)
        out.write(f"  trains on {spec.data.source}, evaluates on {tasks}; expect {chosen.expect}\n")
        changed = from_preset(spec)
        out.write(
            f"  experiment {experiment}, spec {spec_version(spec)} ({spec.profile} profile): "
            + (f"differs from preset {preset} in {_fields(changed)}" if changed else f"exactly preset {preset}")
            + "\n"
        )
    out.write(f"  {homes.lines()[0]}\n")
    out.flush()


def from_preset(spec: ExperimentSpec) -> dict[str, Any]:
    """The fields of ``spec`` that differ from the preset it started from (none without a known preset)."""
    if spec.preset not in PRESETS:
        return {}
    return differences(spec, preset_spec(spec.preset, get_profile(spec.profile)))


def _fields(values: dict[str, Any]) -> str:
    return ", ".join(f"{name}={json.dumps(value)}" for name, value in values.items())


def _launch(job, run_config: dict, experiment: str, instance: DagsterInstance, run_id: str, verbose: bool):
    partition_key = experiment  # experiments are partitions (defs/experiments.py)
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
@click.option(
    "--preset",
    type=click.Choice(sorted(PRESETS)),
    default=DEFAULT_PRESET,
    show_default=True,
    help="The spec to start from (see the README); each option below changes one of its fields.",
)
@click.option(
    "--experiment",
    default="default",
    show_default=True,
    help="The experiment (partition) whose spec this run stores and uses.",
)
@click.option("--backend", type=click.Choice(BACKENDS), default=ENV, show_default=True, help=BACKEND_HELP)
@add_spec_options
@click.option("--dry-run", is_flag=True, help="Check the spec, source and tasks, print the spec, launch nothing.")
@click.option("-v", "--verbose", is_flag=True, help="Dagster's event log and full tracebacks.")
def run(preset: str, experiment: str, backend: str, dry_run: bool, verbose: bool, **options: Any) -> None:
    """Check, then materialize the whole lineage headless with exactly the preset's spec plus the options given."""
    out = sys.stdout  # captured before `quiet` redirects it
    homes = apply_default_homes()
    out.writelines(f"{line}\n" for line in use_backend(backend))
    changes = changes_from_params(options)
    # Read the environment again: --backend has just set it (`defs` read it when it was imported).
    job = build_defs(resources_from_env()).resolve_job_def(LINEAGE_JOB)
    resources = initialized(resources_from_env())
    problems: list[Problem] = []
    spec: Optional[ExperimentSpec] = None
    try:
        validate_experiment_name(experiment)
    except ValueError as exc:
        problems = [Problem("config", f"--experiment: {exc}", "choose another experiment name")]
    try:
        profile = backend_defaults(resources["customizer"])
        spec = build_run_spec(preset, changes, profile) if not problems else None
    except SpecError as exc:
        problems = [Problem("config", str(exc), "correct that option (embed-ft run --help)")]
    except ValueError as exc:  # the API generation: a bad EMBED_FT_NEMO_API, or v2 without its URL
        problems = [Problem("backend", str(exc), "set EMBED_FT_NEMO_API and the NeMo URLs (README), or --backend")]
    _header(out, preset, spec, experiment, homes)
    if spec is not None:
        source = spec.data.resolved().source
        data_line, data_problem = fill_preset_data(source, download=not dry_run)
        out.write(f"  {data_line}\n" if data_line else "")
        problems = preflight_problems(job, spec, resources)
        if data_problem:
            problems.insert(0, Problem(f"source {source}", data_problem, "see the line above"))
    if problems or spec is None:
        out.write(f"preflight: {len(problems)} problem(s); nothing was created or started:\n")
        out.write("".join(f"  {problem.line()}\n" for problem in problems))
        out.write("\n".join(still_running_lines()) + "\n")
        raise SystemExit(2)
    if dry_run:
        out.write("preflight passed; the run's spec (nothing launched, --dry-run):\n")
        out.write(json.dumps(spec.model_dump(mode="json")) + "\n")
        return
    with DagsterInstance.get() as instance:
        run_config = prepare_experiment_run(instance, experiment, preset, changes)
    run_id = str(uuid.uuid4())  # known before launch, so the console can listen to this run's events
    log_path = homes.dagster_home / "last_run.log"
    started = time.monotonic()
    with DagsterInstance.get() as instance, RunConsole(out, tty=False if verbose else None, run_id=run_id) as console:
        instance.add_event_listener(run_id, console.handle)
        if verbose:
            result = _launch(job, run_config, experiment, instance, run_id, verbose)
        else:
            with quiet(log_path):
                result = _launch(job, run_config, experiment, instance, run_id, verbose)
        console.summary(result.success, time.monotonic() - started)
        place = history_place(instance, homes.dagster_home)
    if verbose:
        for event in result.all_events:
            if event.is_step_failure:
                out.write(f"{event.step_key}: {event.step_failure_data.error.to_string()}\n")
    elif not result.success and not console.failures:
        failure = next((e for e in result.all_events if e.event_type_value == "RUN_FAILURE"), None)
        reason = (
            error_text(failure.event_specific_data.error)
            if failure and failure.event_specific_data.error
            else "see the log"
        )
        console.failure("run", reason, f"rerun with -v, or read {log_path}")
    if result.success:
        report = result.output_for_node(REPORT_ASSET)
        out.write("\nresults (test queries never seen in training; heldout = train queries kept out):\n")
        out.write("".join(f"  {line}\n" for line in results_lines(report.rows, report.tests)))
    out.write(f"run {run_id} in {place}; embed-ft report shows it again\n")
    out.write("\n".join(still_running_lines()) + "\n")
    raise SystemExit(0 if result.success else 1)


@main.command()
@click.option("--history/--latest", default=True, help="Also print the metric history of every past report.")
@click.option("--metric", default="ndcg_cut_10", show_default=True, help="Metric shown in the history.")
@click.option(
    "--experiments", "leaderboard", is_flag=True, help="Print the leaderboard: every experiment's latest report."
)
def report(history: bool, metric: str, leaderboard: bool) -> None:
    """Print the latest evaluation report and the history of every report, from the Dagster instance."""
    homes = apply_default_homes()
    with DagsterInstance.get() as instance:
        entries = report_history(instance)
        board = leaderboard_rows(latest_reports(instance), metric) if leaderboard else []
        place = history_place(instance, homes.dagster_home)
    if not entries:
        raise click.ClickException(
            f"no {REPORT_ASSET} yet in {place} (the history, DAGSTER_HOME). "
            "Create one with: embed-ft run   (or ./dev run; --preset smoke for a quick check)"
        )
    latest = entries[-1]
    if leaderboard:
        click.echo(f"leaderboard ({metric}, every experiment's latest report):")
        click.echo(leaderboard_markdown(board))
        click.echo(f"\nhistory lives in {place}")
        return
    click.echo(f"latest report: {latest.date}, experiment {latest.experiment}, run {latest.run_id}")
    click.echo("\n".join(f"  {line}" for line in latest_table(latest)))
    if history:
        click.echo(f"\nhistory of {metric} (baseline -> fine-tuned), oldest first:")
        click.echo("\n".join(history_line(entry, metric) for entry in entries))
    click.echo(f"\nhistory lives in {place}")


@main.group(invoke_without_command=True)
@click.pass_context
def experiments(ctx: click.Context) -> None:
    """List the experiments with their spec (version, preset, profile, what differs from the preset)."""
    if ctx.invoked_subcommand is not None:
        return
    homes = apply_default_homes()
    with DagsterInstance.get() as instance:
        rows = [(name, stored_spec(instance, name)) for name in experiment_names(instance)]
    if not rows:
        click.echo(f"no experiments yet in {homes.dagster_home}; create one with: embed-ft run --experiment NAME")
        return
    for name, found in rows:
        if found is None:
            click.echo(f"{name}: no spec stored yet")
            continue
        spec = found.spec
        changed = from_preset(spec)
        click.echo(
            f"{name}: spec {found.version}, preset {spec.preset or '-'}, profile {spec.profile}"
            + (f"; differs from the preset in {_fields(changed)}" if changed else "")
        )


@experiments.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True, help="The stored spec as one JSON document.")
def experiments_show(name: str, as_json: bool) -> None:
    """Print experiment NAME's stored spec, field by field (* = differs from its preset), and its versions."""
    apply_default_homes()
    with DagsterInstance.get() as instance:
        found = stored_spec(instance, name)
        history = spec_history(instance, name)
    if found is None:
        raise click.ClickException(
            f"experiment {name!r} has no stored spec; create it with: embed-ft run --experiment {name}"
        )
    spec = found.spec
    if as_json:
        click.echo(json.dumps(spec.model_dump(mode="json"), indent=1))
        return
    changed = from_preset(spec)
    click.echo(f"experiment {name}: spec {found.version}, preset {spec.preset or '-'}, profile {spec.profile}")
    for field, value in flat(spec).items():
        click.echo(f"  {'*' if field in changed else ' '} {field} = {json.dumps(value)}")
    click.echo(f"versions ({len(history)}), oldest first:")
    for row in history:
        moved = row.get("changed_from_previous") or {}
        click.echo(
            f"  {row.get('spec_version')}  run {row['run_id'][:8]}  preset {row.get('preset') or '-'}  "
            f"changed: {_fields(moved) if moved else 'nothing'}"
        )


@main.command()
@click.option("--experiment", "experiments", multiple=True, help="Experiment whose NIMs are deleted (repeatable).")
@click.option("--backend", type=click.Choice(BACKENDS), default=ENV, show_default=True, help=BACKEND_HELP)
def teardown(experiments: tuple[str, ...], backend: str) -> None:
    """Delete NIM deployments (they hold GPUs): runs teardown_deployments_job."""
    apply_default_homes()
    use_backend(backend)
    job = build_defs(resources_from_env()).resolve_job_def("teardown_deployments_job")
    ops = [node.name for node in job.graph.nodes]
    run_config = {"ops": {ops[0]: {"config": {"experiments": list(experiments)}}}} if experiments else {}
    with DagsterInstance.get() as instance:
        result = job.execute_in_process(
            run_config={**run_config, **SILENT_LOGGERS}, instance=instance, raise_on_error=False
        )
    for event in result.all_events:
        if event.is_step_failure:
            click.echo(f"FAILED {event.step_key}: {error_text(event.step_failure_data.error)}", err=True)
    click.echo("teardown " + ("done" if result.success else "FAILED"))
    click.echo("\n".join(still_running_lines()))
    raise SystemExit(0 if result.success else 1)


@main.command()
@click.option("--port", default=3000, show_default=True)
@click.option("--backend", type=click.Choice(BACKENDS), default=ENV, show_default=True, help=BACKEND_HELP)
def ui(port: int, backend: str) -> None:
    """Start the local platform (if no NeMo URLs are set) and `dg dev` (Dagster webserver + daemon) on 127.0.0.1."""
    ensure_dagster_home()
    for line in use_backend(backend):
        click.echo(line)
    if not os.environ.get("NEMO_URL"):
        click.echo(f"local platform: {ensure_running(PlatformSettings())}")
    # In a checkout, the dg project of pyproject.toml ([tool.dg], code location `embed_ft`); elsewhere, the module.
    root = Path(__file__).resolve().parents[1]
    in_checkout = (root / "pyproject.toml").is_file() and (root / "workspace.yaml").is_file()
    target = ["--target-path", str(root)] if in_checkout else ["-m", "embed_ft.definitions"]
    dg = Path(sys.executable).with_name("dg")
    cmd = [
        str(dg) if dg.is_file() else "dg",
        "dev",
        *target,
        "--use-active-venv",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    env = dict(os.environ)
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix  # the code server runs in this interpreter's environment
    # Ctrl-C, SIGTERM and SIGHUP stop dg dev and the webserver, daemon and code servers it starts alike.
    raise SystemExit(run_foreground(cmd, env=env, cwd=root if in_checkout else None))


main.add_command(platform_group)
main.add_command(helix_group)


if __name__ == "__main__":
    main()
