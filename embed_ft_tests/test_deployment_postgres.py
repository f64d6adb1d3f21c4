"""Dagster as a service, for real, on PostgreSQL (deploy/dagster.yaml, docs/DEPLOYMENT.md "A single server").

One throwaway PostgreSQL server on 127.0.0.1 (postgres_server.py) holds the instance; the code server (the image's
own command, deploy/Dockerfile), `dagster-webserver` and `dagster-daemon` run as separate processes with
deploy/workspace.yaml, as the single-server recipe runs them. The backend is the embedded local platform on loopback
with fault injection, which the tests use as a gate: a customization job reports "running" until the test releases
it, so "the pool holds the second training" is observed in the pool's claims, never inferred from timing.

- `embed-ft run` and `embed-ft report` work unchanged against the instance (the first lineage, tiny data, 1 step);
- two experiments submitted at once through the queue run side by side; the `nemo_customizer` pool (1 slot) holds
  the second training until the first ends; the daemon is killed and restarted meanwhile, and afterwards both runs
  succeed, each launched once, with one customization job per experiment;
- a change of the source launches one `data_refresh_job` through `specter_source_sensor`;
- after every process and PostgreSQL itself stopped and PostgreSQL started again, `embed-ft report` reads the
  whole history back, and `embed-ft teardown` works against the instance.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import requests
import yaml
from dagster import AssetKey, DagsterEventType, DagsterInstance, DagsterRunStatus, RunsFilter
from dagster_graphql import DagsterGraphQLClient

from embed_ft.defs.experiments import prepare_experiment_run
from embed_ft.history import report_history
from embed_ft.spec.presets import DEFAULT_PRESET

from .deploy_files import DEPLOY, dockerfile, image_command
from .fault_scenarios import FaultControl, jobs, wait_for
from .lineage_fixtures import write_beir_set, write_specter_jsonl
from .platform_server import running_platform
from .postgres_server import PostgresServer, free_port, running_postgres

pytestmark = [pytest.mark.slow, pytest.mark.timeout(2400)]  # the module's first test also starts everything

LOCATION = "embed_ft"
REPOSITORY = "__repository__"
CUSTOMIZER_POOL = "nemo_customizer"
STATUS_PATH = r"/v1/customization/jobs/[^/]+/status"
# Bounds, not expectations (on a quiet 2-core machine each wait is well under a minute): a shared, loaded machine
# runs everything several times slower.
START_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 900.0
BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]
# The spec changes of every run here (the same as the first lineage's command line): tiny data, one step.
TINY = {
    "split.sample_size": 40,
    "split.test_size": 8,
    "split.validation_size": 0.15,
    "training.max_steps": 1,
    "training.batch_size": 8,
    "training.max_seq_length": 64,
    "remote.poll_interval_s": 0.5,
    "evaluation.tasks": ["file://tinybeir/"],
}


def experiment_run_config(instance: DagsterInstance, experiment: str, source: Path, learning_rate: float) -> dict:
    """experiment_job on tiny data, as `embed-ft run` built the first lineage's spec: one training step; its own
    learning rate makes it a distinct experiment. Registers the experiment (partition).

    Its steps run in the run's own process (`in_process`), which saves a Python start per step; pools bind either
    executor alike. The sensor's run below keeps the default (a process per step)."""
    changes = {**TINY, "data.source": str(source), "training.learning_rate": learning_rate}
    run_config = prepare_experiment_run(instance, experiment, DEFAULT_PRESET, changes)
    return {**run_config, "execution": {"config": {"in_process": {}}}}


@dataclass
class Deployment:
    root: Path
    postgres: PostgresServer
    platform_url: str
    source: Path
    patch: pytest.MonkeyPatch
    web_port: int = 0
    code_port: int = 0
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    def env(self) -> dict[str, str]:
        """One environment for every process: the instance (deploy/dagster.yaml on this PostgreSQL), the backend
        (the loopback platform's URLs, as on a cluster) and a shared data root."""
        env = dict(os.environ)
        env.update(self.postgres.dagster_env())
        env.update(
            {
                "DAGSTER_HOME": str(self.home),
                "EMBED_FT_DATA_ROOT": str(self.root / "data"),
                "EMBED_FT_HOME": str(self.root / "unused-platform-home"),
                "NDS_URL": self.platform_url,
                "NEMO_URL": self.platform_url,
                "NIM_URL": f"{self.platform_url}/nim",
                "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
            }
        )
        return env

    def instance(self) -> DagsterInstance:
        """The instance as this test process sees it (the connection variables follow a PostgreSQL restart)."""
        for name, value in self.postgres.dagster_env().items():
            self.patch.setenv(name, value)
        return DagsterInstance.from_config(str(self.home))

    def _start(self, name: str, cmd: list[str], env: dict[str, str]) -> None:
        log = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 (the child owns it; closed below)
        self.processes[name] = subprocess.Popen(
            cmd, env=env, cwd=self.root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        log.close()

    def log(self, name: str) -> str:
        return (self.root / f"{name}.log").read_text(errors="replace")[-4000:]

    def start_code_server(self) -> None:
        """deploy/Dockerfile's CMD with the image's ENV: only the bind address (loopback), the port and the
        instance's paths differ (the image's DAGSTER_HOME is the chart's mount point)."""
        self.code_port = free_port()
        env = {**{k: v for k, v in dockerfile()["env"].items() if not v.startswith("/")}, **self.env()}
        self._start("code-server", image_command(BIN, self.code_port), env)
        workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text("utf-8"))
        workspace["load_from"][0]["grpc_server"]["port"] = self.code_port
        (self.root / "workspace.yaml").write_text(yaml.safe_dump(workspace))

    def start_webserver(self) -> None:
        self.web_port = free_port()
        self._start(
            "webserver",
            [
                str(BIN / "dagster-webserver"),
                "-h",
                "127.0.0.1",
                "-p",
                str(self.web_port),
                "-w",
                str(self.root / "workspace.yaml"),
            ],
            self.env(),
        )

    def start_daemon(self) -> None:
        self._start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(self.root / "workspace.yaml")], self.env())

    def stop(self, name: str, sig: int = signal.SIGTERM) -> None:
        """Stop one process by its pid (then anything it started, by the group it leads); SIGKILL if it lingers."""
        process = self.processes.pop(name)
        if process.poll() is None:
            process.send_signal(sig)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(30)
        try:
            os.killpg(process.pid, signal.SIGKILL)  # its own session: only what this process started
        except ProcessLookupError:
            pass

    def wait_until_serving(self) -> None:
        def up() -> bool:
            for name in ("code-server", "webserver", "daemon"):
                process = self.processes.get(name)
                assert process is None or process.poll() is None, f"{name} exited:\n{self.log(name)}"
            try:
                answer = requests.get(f"http://127.0.0.1:{self.web_port}/server_info", timeout=5)
            except requests.RequestException:
                return False
            return answer.ok and self.location_loaded()

        wait_for(up, "the code server and the webserver", timeout_s=START_TIMEOUT_S, interval_s=1)

    def location_loaded(self) -> bool:
        query = (
            "{ workspaceOrError { ... on Workspace { locationEntries { name locationOrLoadError { __typename } } } } }"
        )
        entries = self.query(query)["workspaceOrError"]["locationEntries"]
        loaded = {e["name"] for e in entries if e["locationOrLoadError"]["__typename"] == "RepositoryLocation"}
        return LOCATION in loaded

    def graphql(self) -> DagsterGraphQLClient:
        return DagsterGraphQLClient("127.0.0.1", port_number=self.web_port)

    def query(self, text: str, variables: dict | None = None) -> dict:
        answer = requests.post(
            f"http://127.0.0.1:{self.web_port}/graphql", json={"query": text, "variables": variables or {}}, timeout=60
        )
        answer.raise_for_status()
        body = answer.json()
        assert "errors" not in body, body
        return body["data"]

    def daemon_heartbeat(self, instance: DagsterInstance, after: float) -> bool:
        """The daemon's run queue and sensor loops have reported since ``after`` (a time.time())."""
        beats = instance.get_daemon_heartbeats()
        return all(kind in beats and beats[kind].timestamp > after for kind in ("QUEUED_RUN_COORDINATOR", "SENSOR"))

    def cli(self, *args: str, timeout: float = RUN_TIMEOUT_S) -> subprocess.CompletedProcess:
        """`embed-ft ARGS` as a person runs it, against this instance."""
        return subprocess.run(
            [str(BIN / "embed-ft"), *args],
            env=self.env(),
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )


@pytest.fixture(scope="module")
def deployment(tmp_path_factory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("deployment")
    beir = root / "beir"
    write_beir_set(beir, "tinybeir")
    source = write_specter_jsonl(root / "source" / "specter.jsonl")
    (root / "dagster_home").mkdir()
    shutil.copy(DEPLOY / "dagster.yaml", root / "dagster_home" / "dagster.yaml")  # as the recipe installs it
    with running_postgres() as postgres, running_platform(root, enable_faults=True, beir_root=beir) as (url, _):
        patch = pytest.MonkeyPatch()
        deployment = Deployment(root=root, postgres=postgres, platform_url=url, source=source, patch=patch)
        try:
            deployment.start_code_server()
            deployment.start_webserver()
            deployment.start_daemon()
            deployment.wait_until_serving()
            yield deployment
        finally:
            for name in list(deployment.processes):
                deployment.stop(name)
            patch.undo()


@pytest.fixture(scope="module")
def first_lineage(deployment: Deployment) -> subprocess.CompletedProcess:
    """The whole lineage once, through `embed-ft run` (not queued: the CLI executes in its own process)."""
    done = deployment.cli(
        "run",
        "--source",
        str(deployment.source),
        "--task",
        "file://tinybeir/",
        "--experiment",
        "base",
        "--sample-size",
        "40",
        "--test-size",
        "8",
        "--validation-size",
        "0.15",
        "--max-steps",
        "1",
        "--batch-size",
        "8",
        "--max-seq-length",
        "64",
        "--poll-interval",
        "0.5",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return done


# ------------------------------------------------------------------------------------------------ helpers


def records(instance: DagsterInstance, run_id: str) -> list:
    return list(instance.get_records_for_run(run_id, limit=100_000).records)


def first_storage_id(
    instance: DagsterInstance, run_id: str, event_type: DagsterEventType, step: str | None = None
) -> int:
    found = [
        r.storage_id
        for r in records(instance, run_id)
        if r.event_log_entry.dagster_event_type == event_type and (step is None or r.event_log_entry.step_key == step)
    ]
    assert found, f"run {run_id} has no {event_type.value}{f' for {step}' if step else ''}"
    return min(found)


def count_events(instance: DagsterInstance, run_id: str, event_type: DagsterEventType) -> int:
    return sum(1 for r in records(instance, run_id) if r.event_log_entry.dagster_event_type == event_type)


def wait_for_runs(instance: DagsterInstance, run_ids: list[str], deployment: Deployment) -> dict[str, DagsterRunStatus]:
    def finished():
        runs = {run_id: instance.get_run_by_id(run_id) for run_id in run_ids}
        return {k: r.status for k, r in runs.items()} if all(r and r.is_finished for r in runs.values()) else None

    try:
        return wait_for(finished, f"runs {run_ids} to finish", timeout_s=RUN_TIMEOUT_S, interval_s=1)
    except AssertionError:
        raise AssertionError(f"runs did not finish; daemon log:\n{deployment.log('daemon')}") from None


# ------------------------------------------------------------------------------------------------ tests


def test_embed_ft_run_and_report_work_unchanged_against_postgres(deployment, first_lineage):
    out = first_lineage.stdout
    assert "results (test queries never seen in training" in out
    assert f"history (DAGSTER_HOME): {deployment.home}" in out
    report = deployment.cli("report", timeout=120)
    assert report.returncode == 0, report.stderr
    assert ", experiment base, run " in report.stdout.splitlines()[0]
    # Where the history is, as the CLI says it: the database, not the DAGSTER_HOME folder.
    assert report.stdout.splitlines()[-1].startswith("history lives in PostgreSQL"), report.stdout[-300:]
    assert re.search(r"^run \S+ in PostgreSQL \(.*; embed-ft report shows it again$", out, re.M), out[-500:]
    with deployment.instance() as instance:
        assert type(instance.run_storage).__name__ == "PostgresRunStorage"
        assert [entry.experiment for entry in report_history(instance)] == ["base"]
        # The CLI's run took the customizer pool's slot in PostgreSQL too, and gave it back.
        pool = instance.event_log_storage.get_concurrency_info(CUSTOMIZER_POOL)
        assert (pool.slot_count, pool.claimed_slots) == (1, [])


def test_two_experiments_side_by_side_the_pool_holds_the_second_training_through_a_daemon_restart(
    deployment, first_lineage
):
    faults = FaultControl(deployment.platform_url)
    # The gate: every customization job reports "running" until the rule is cleared.
    faults.arm("patch_json", STATUS_PATH, "GET", times=10_000, body={"status": "running"})
    client = deployment.graphql()
    with deployment.instance() as instance:
        configs = {
            experiment: experiment_run_config(instance, experiment, deployment.source, learning_rate)
            for experiment, learning_rate in (("exp-a", 5e-5), ("exp-b", 1e-4))
        }
        submitted = {
            experiment: client.submit_job_execution(
                "experiment_job",
                repository_location_name=LOCATION,
                repository_name=REPOSITORY,
                run_config=run_config,
                tags={"dagster/partition": experiment},
            )
            for experiment, run_config in configs.items()
        }
        assert {instance.get_run_by_id(r).status for r in submitted.values()} <= {
            DagsterRunStatus.QUEUED,
            DagsterRunStatus.STARTING,
            DagsterRunStatus.STARTED,
        }

        def one_training_holds_the_pool_and_the_other_waits():
            pool = instance.event_log_storage.get_concurrency_info(CUSTOMIZER_POOL)
            fired = sum(rule["fired"] for rule in faults.rules())  # the holder polls its (gated) job
            waiting = [s for s in pool.pending_steps if s.assigned_timestamp is None]
            return pool if len(pool.claimed_slots) == 1 and len(waiting) == 1 and fired > 0 else None

        pool = wait_for(
            one_training_holds_the_pool_and_the_other_waits,
            "one training holding the customizer pool and the other waiting for it",
            timeout_s=RUN_TIMEOUT_S,
            interval_s=0.5,
        )
        first = pool.claimed_slots[0].run_id
        (second,) = [run_id for run_id in submitted.values() if run_id != first]

        def second_is_held() -> None:
            pool = instance.event_log_storage.get_concurrency_info(CUSTOMIZER_POOL)
            assert [(c.run_id, c.step_key) for c in pool.claimed_slots] == [(first, "fine_tuned_model")]
            assert [(s.run_id, s.step_key) for s in pool.pending_steps if s.assigned_timestamp is None] == [
                (second, "fine_tuned_model")
            ]
            steps = {
                r.event_log_entry.step_key
                for r in records(instance, second)
                if r.event_log_entry.dagster_event_type == DagsterEventType.STEP_START
            }
            assert "fine_tuned_model" not in steps
            # Both runs started (2 of the 8 allowed): only the pool holds the second training.
            assert instance.get_run_by_id(second).status == DagsterRunStatus.STARTED

        second_is_held()
        # The daemon dies mid-run (SIGKILL: no clean shutdown) and comes back.
        killed_at = time.time()
        deployment.stop("daemon", signal.SIGKILL)
        deployment.start_daemon()
        wait_for(
            lambda: deployment.daemon_heartbeat(instance, killed_at),
            "the restarted daemon's heartbeats",
            timeout_s=START_TIMEOUT_S,
            interval_s=1,
        )
        second_is_held()
        assert instance.get_run_by_id(first).status == DagsterRunStatus.STARTED  # the run outlived the daemon

        faults.clear()  # the first training ends
        statuses = wait_for_runs(instance, list(submitted.values()), deployment)
        assert statuses == {run_id: DagsterRunStatus.SUCCESS for run_id in submitted.values()}

        # The second training started only after the first released the slot ...
        first_trained = first_storage_id(instance, first, DagsterEventType.STEP_SUCCESS, "fine_tuned_model")
        second_training = first_storage_id(instance, second, DagsterEventType.STEP_START, "fine_tuned_model")
        assert first_trained < second_training
        # ... while the first run was still going: side by side, not one after the other.
        assert first_storage_id(instance, second, DagsterEventType.RUN_START) < first_storage_id(
            instance, first, DagsterEventType.RUN_SUCCESS
        )
        # Launched once each, through the queue, across the daemon restart; one customization job per experiment.
        for run_id in submitted.values():
            assert count_events(instance, run_id, DagsterEventType.RUN_ENQUEUED) == 1
            assert count_events(instance, run_id, DagsterEventType.RUN_STARTING) == 1
            assert count_events(instance, run_id, DagsterEventType.RUN_START) == 1
        experiment_runs = instance.get_run_records(RunsFilter(job_name="experiment_job"))
        assert len(experiment_runs) == 2
        keys = [(j.get("custom_fields") or {}).get("embed_ft_idempotency_key") for j in jobs(deployment.platform_url)]
        assert len(keys) == 3  # base, exp-a, exp-b
        assert len(set(keys)) == 3
        assert {e.experiment for e in report_history(instance)} == {"base", "exp-a", "exp-b"}


def test_a_source_change_launches_one_refresh_through_the_sensor(deployment, first_lineage):
    with deployment.instance() as instance:
        built = instance.fetch_materializations(AssetKey("specter_raw"), limit=10).records
        assert len(built) == 1
        with deployment.source.open("a") as handle:  # a new row: the source's content hash changes
            handle.write(
                json.dumps(
                    {
                        "set": [
                            "A new query on protein folding",
                            "A cited paper on folding",
                            "An unrelated paper on alloys",
                        ]
                    }
                )
                + "\n"
            )
        selector = {
            "repositoryLocationName": LOCATION,
            "repositoryName": REPOSITORY,
            "sensorName": "specter_source_sensor",
        }
        started = deployment.query(
            "mutation($s: SensorSelector!) { startSensor(sensorSelector: $s) { __typename ... on Sensor {"
            " sensorState { status } } } }",
            {"s": selector},
        )
        assert started["startSensor"]["sensorState"]["status"] == "RUNNING"

        def refresh_run():
            runs = instance.get_run_records(RunsFilter(tags={"dagster/sensor_name": "specter_source_sensor"}))
            return runs if runs and runs[0].dagster_run.is_finished else None

        (run,) = wait_for(refresh_run, "the sensor's data_refresh_job", timeout_s=RUN_TIMEOUT_S, interval_s=1)
        assert run.dagster_run.job_name == "data_refresh_job"
        assert run.dagster_run.status == DagsterRunStatus.SUCCESS, deployment.log("daemon")
        rebuilt = instance.fetch_materializations(AssetKey("specter_raw"), limit=10).records
        assert rebuilt[0].run_id == run.dagster_run.run_id  # newest first
        # One change, one run: the sensor's cursor holds the version it launched for.
        assert len(instance.get_run_records(RunsFilter(job_name="data_refresh_job"))) == 1


def test_the_history_is_read_back_from_postgres_after_everything_restarts(deployment, first_lineage):
    with deployment.instance() as instance:
        before = [(e.run_id, e.experiment) for e in report_history(instance)]
    assert before
    for name in ("daemon", "webserver", "code-server"):
        deployment.stop(name)
    deployment.postgres.stop()
    deployment.postgres.start()  # same data folder, a new port: DAGSTER_PG_PORT changes, nothing else
    report = deployment.cli("report", timeout=120)
    assert report.returncode == 0, report.stderr
    listed = [line for line in report.stdout.splitlines() if line.startswith("- ")]
    read_back = [(line.split(" run ")[1].split(":")[0], line.split(" experiment ")[1].split()[0]) for line in listed]
    assert read_back == before
    torn = deployment.cli("teardown", timeout=300)
    assert torn.returncode == 0, torn.stdout + torn.stderr
    assert "teardown done" in torn.stdout
    assert "deployment embed-sft-ns/" not in torn.stdout  # every NIM deleted, recorded in the same history
    with deployment.instance() as instance:
        assert [r.dagster_run.job_name for r in instance.get_run_records(limit=1)] == ["teardown_deployments_job"]
