"""Preflight: the spec's profile, source and tasks are checked before anything is created, from the CLI and inside
Dagster runs (the spec's own fields were validated when it was built: `test_spec.py`, and here through the CLI).

The platform is real (127.0.0.1); after a failed preflight its lists of namespaces, repos, datasets, deployments,
customization and evaluation jobs are asked, and must be empty.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests
from dagster import AssetKey, DagsterInstance, materialize

from embed_ft.definitions import defs, lineage_assets
from embed_ft.defs.experiments import prepare_experiment_run
from embed_ft.defs.preflight import PREFLIGHT_CHECK, preflight_problems
from embed_ft.profiles import LOCAL, NEMO_V1
from embed_ft.resources import resources_for_url, resources_from_env
from embed_ft.spec.changes import SpecError, apply_changes
from embed_ft.spec.presets import preset_spec

from .lineage_fixtures import tiny_lineage_run_config, write_beir_set, write_specter_jsonl
from .platform_server import running_platform

MAX_LINES = 15
LISTS = (
    "/v1/namespaces",
    "/v1/datasets",
    "/v1/deployment/model-deployments",
    "/v1/customization/jobs",
    "/v1/evaluation/jobs",
)


def job():
    return defs.resolve_job_def("full_lineage_job")


def changes(source: str, task: str = "file://tinybeir/", **training) -> dict:
    return {**tiny_lineage_run_config(source, task), **{f"training.{k}": v for k, v in training.items()}}


def config(source: str, task: str = "file://tinybeir/", profile=LOCAL, **training):
    """The spec a run of the tiny lineage would use (the smoke preset with the tiny changes)."""
    return apply_changes(preset_spec("smoke", profile), changes(source, task, **training))


def embedded(monkeypatch, tmp_path, beir_root):
    """The embedded platform's settings (no URL set): home and BEIR root of this test."""
    monkeypatch.setenv("EMBED_FT_HOME", str(tmp_path / "platform-home"))
    monkeypatch.setenv("EMBED_FT_BEIR_ROOT", str(beir_root))
    return {key: r.process_config_and_initialize() for key, r in resources_from_env().items()}


def listed(base_url: str) -> dict[str, list]:
    found = {}
    for path in LISTS:
        answer = requests.get(f"{base_url}{path}", timeout=10)
        assert answer.status_code == 200, (path, answer.text)
        found[path] = answer.json()["data"]
    return found


def assert_nothing_created(base_url: str) -> None:
    """Only what a fresh platform holds (the namespace of its packaged model): nothing of ours."""
    found = listed(base_url)
    assert [n["id"] for n in found.pop("/v1/namespaces")] == ["sentence-transformers"]
    assert found == {path: [] for path in LISTS[1:]}


def test_a_good_run_passes(tmp_path, monkeypatch):
    source = write_specter_jsonl(tmp_path / "src" / "triplets.jsonl")
    resources = embedded(monkeypatch, tmp_path, write_beir_set(tmp_path / "beir").parent)
    assert preflight_problems(job(), config(str(source)), resources) == []


@pytest.mark.parametrize(
    "fine_tune, task, expected",
    [
        ({"epochs": -1}, "file://tinybeir/", "training.epochs: Input should be greater than or equal to 1"),
        ({"warmup_steps": -2}, "file://tinybeir/", "training.warmup_steps: Input should be greater than or equal to 0"),
        ({}, "scidocs", "evaluation.tasks: unknown evaluation task 'scidocs'"),
        ({"epochs": "three"}, "file://tinybeir/", "training.epochs: Input should be a valid integer"),
    ],
)
def test_a_bad_field_is_refused_once_with_its_name(tmp_path, fine_tune, task, expected):
    """Validated once, when the spec is built (the CLI turns it into one `config` problem: test_cli.py)."""
    with pytest.raises(SpecError) as refused:
        config(str(tmp_path / "triplets.jsonl"), task, **fine_tune)
    assert expected in str(refused.value)


def test_a_spec_made_for_another_backend_is_one_problem(tmp_path, monkeypatch):
    source = write_specter_jsonl(tmp_path / "src" / "triplets.jsonl")
    resources = embedded(monkeypatch, tmp_path, write_beir_set(tmp_path / "beir").parent)
    problems = preflight_problems(job(), config(str(source), profile=NEMO_V1), resources)
    assert [p.what for p in problems] == ["profile"]
    assert "'nemo' backend profile" in problems[0].why
    assert "'local' backend" in problems[0].why


def test_missing_source_and_unreachable_hub(tmp_path, monkeypatch):
    resources = embedded(monkeypatch, tmp_path, tmp_path)
    missing = preflight_problems(job(), config(str(tmp_path / "nowhere.jsonl")), resources)
    assert [p.what for p in missing] == [f"source {tmp_path / 'nowhere.jsonl'}"]
    assert "does not exist" in missing[0].why
    hub = preflight_problems(job(), config("embedding-data/SPECTER"), resources)  # the suite is offline
    assert len(hub) == 1
    assert "Hugging Face Hub cannot be reached" in hub[0].why
    assert "--source" in hub[0].fix


def test_beir_source_needs_the_train_split(tmp_path, monkeypatch):
    beir = write_beir_set(tmp_path / "beir")  # test qrels only
    resources = embedded(monkeypatch, tmp_path, beir.parent)
    problems = preflight_problems(job(), config(str(beir)), resources)
    assert len(problems) == 1
    assert "train" in problems[0].why


def test_tasks_must_exist_in_the_beir_root_and_the_data_store(tmp_path, monkeypatch):
    source = write_specter_jsonl(tmp_path / "src" / "triplets.jsonl")
    resources = embedded(monkeypatch, tmp_path, write_beir_set(tmp_path / "beir").parent)
    problems = preflight_problems(job(), config(str(source), "file://scidocs/"), resources)
    assert [p.what for p in problems] == ["task file://scidocs/"]
    assert str(tmp_path / "beir") in problems[0].why
    assert "EMBED_FT_BEIR_ROOT" in problems[0].fix
    with running_platform(tmp_path) as (base_url, _settings):
        problems = preflight_problems(
            job(), config(str(source), "hf://datasets/embed-sft-ns/no-such-set"), resources_for_url(base_url)
        )
        assert [p.line() for p in problems] == [
            "task hf://datasets/embed-sft-ns/no-such-set: no dataset repo embed-sft-ns/no-such-set in the Data Store "
            "-> fix: upload the BEIR set there first, or drop the task"
        ]
        assert_nothing_created(base_url)


def test_a_dagster_run_with_a_missing_source_stops_at_preflight_and_creates_nothing(tmp_path):
    """As launched from the UI: one failed check at the start, every other step skipped, no asset marked failed."""
    partitions = job().partitions_def
    with running_platform(tmp_path) as (base_url, _settings), DagsterInstance.ephemeral() as instance:
        assert partitions is not None
        run_config = prepare_experiment_run(instance, "default", "smoke", changes(str(tmp_path / "nowhere.jsonl")))
        result = materialize(
            [*lineage_assets, *(defs.asset_checks or [])],
            resources=resources_for_url(base_url),
            run_config=run_config,
            instance=instance,
            raise_on_error=False,
            partition_key="default",
        )
        started = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
        assert started == ["experiment_spec", "preflight"]  # the spec is stored, then checked
        failures = [e for e in result.all_events if e.is_step_failure]
        assert failures == []  # Dagster marks assets planned in a failed run "Failed"; this run did not fail
        checks = [e.event_specific_data for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"]
        assert [(c.check_name, c.passed) for c in checks] == [(PREFLIGHT_CHECK, False)]
        assert "does not exist" in checks[0].description
        assert instance.get_latest_materialization_event(AssetKey("baseline_nim")) is None
        assert_nothing_created(base_url)


def cli(args: list[str], env: dict, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "embed_ft.cli", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=300
    )


@pytest.mark.slow  # 30 s on the shared machine
def test_cli_with_a_missing_source_prints_few_lines_and_creates_nothing(tmp_path):
    env = dict(os.environ, DAGSTER_HOME=str(tmp_path / "dagster_home"), EMBED_FT_HOME=str(tmp_path / "ph"))
    with running_platform(tmp_path) as (base_url, _settings):
        env.update(NDS_URL=base_url, NEMO_URL=base_url, NIM_URL=base_url)
        proc = cli(["run", "--source", str(tmp_path / "nowhere")], env, tmp_path)
        assert proc.returncode == 2, proc.stdout + proc.stderr
        output = (proc.stdout + proc.stderr).strip().splitlines()
        assert len(output) <= MAX_LINES, "\n".join(output)
        assert "Traceback" not in proc.stdout + proc.stderr
        problem = [line for line in output if line.startswith(f"  source {tmp_path / 'nowhere'}")]
        assert len(problem) == 1
        assert "does not exist -> fix: " in problem[0]
        assert_nothing_created(base_url)
    # Without any URL: the embedded platform was not even started.
    env = {k: v for k, v in env.items() if k not in ("NDS_URL", "NEMO_URL", "NIM_URL")}
    proc = cli(["run", "--source", str(tmp_path / "nowhere")], env, tmp_path)
    assert proc.returncode == 2
    assert proc.stdout.strip().splitlines()[-1] == "nothing is left running"
    status = cli(["platform", "status", "--json"], env, tmp_path)
    assert json.loads(status.stdout)["running"] is False
