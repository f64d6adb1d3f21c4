"""Reliability: the real lineage against the real platform with injected faults loses and duplicates nothing.

Each test drives Dagster materializations of the lineage against a local platform whose fault layer
(``embed_ft_tests/faults.py``) fails, resets or delays requests, fails jobs mid-run, or whose process is killed,
then asserts on the platform's state. Every test prints a tally line (faults injected, runs completed,
duplicates, orphans, lost artifacts).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest
from dagster import DagsterInstance

from embed_ft.defs.serving import BASELINE_DEPLOYMENT

from .fault_scenarios import (
    BASELINE_ASSETS,
    TRAINING_ASSETS,
    FaultControl,
    Tally,
    count_duplicates,
    failure_text,
    free_port,
    harness,
    jobs,
    kill_process_group,
    list_all,
    lost_artifacts,
    make_resources,
    materialize_assets,
    orphan_jobs,
    run_config,
    run_logs,
    start_materialize_process,
    start_platform_process,
    wait_for,
    wait_for_job_status,
)
from .lineage_fixtures import write_beir_set, write_specter_jsonl
from .platform_server import hub_online, running_platform  # noqa: F401  (fixture)

pytestmark = pytest.mark.slow

NAMESPACE = "embed-sft-ns"


def _report(capsys, title: str, tally: Tally) -> None:
    with capsys.disabled():
        print(f"\n[reliability] {title}: {tally.line()}")


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    source = write_specter_jsonl(tmp_path / "source" / "triplets.jsonl")
    return source, tmp_path / "data"


def _end_state(base_url: str, home: Path, tally: Tally) -> None:
    """Duplicates, orphans and lost artifacts as the platform sees them after every run ended."""
    tally.duplicates += count_duplicates(
        [j for j in jobs(base_url) if j["status"] in ("running", "completed")],
        key=lambda j: (j.get("custom_fields") or {}).get("embed_ft_idempotency_key"),
    )
    tally.duplicates += count_duplicates(list_all(base_url, "/v1/datasets"), key=lambda d: (d["namespace"], d["name"]))
    tally.orphans += len(orphan_jobs(base_url))
    tally.lost_artifacts += len(lost_artifacts(base_url, home))


def _fault_effects(base_url: str, kind: str, injected_detail: str) -> list[str]:
    """The jobs whose end a fault caused: failed with the injected detail, cancelled (a terminated run), or failed
    because the platform process was killed under them."""
    effects = []
    for job in jobs(base_url, kind):
        logs = harness.get(f"{base_url}/v1/{kind}/jobs/{job['id']}", timeout=10).json().get("status_logs") or []
        last = logs[-1].get("detail", "") if logs else ""
        if job["status"] == "cancelled":
            effects.append(f"{job['id']}: cancelled")
        elif job["status"] == "failed" and (injected_detail in last or "platform process stopped" in last):
            effects.append(f"{job['id']}: {last}")
    return effects


def test_lost_answers_and_transient_errors_during_training(tmp_path, hub_online, capsys):
    """Lost create answers (reset/502/timeout after the work was done) create exactly one object each; transient
    5xx and resets on reads are retried; a crashed run's retry reattaches to the running job, a later run to the
    completed one: one dataset, one config, one job, one model."""
    source, data_root = _inputs(tmp_path)
    tally = Tally()
    config = run_config(source, data_root, experiment="lost", max_steps=4, select=TRAINING_ASSETS)
    with running_platform(tmp_path, enable_faults=True) as (url, settings):
        faults = FaultControl(url)
        # Creates whose answer is lost although the server did the work.
        faults.arm("status", "/v1/namespaces", "POST", when="after", status=502)
        faults.arm("reset", "/v1/datasets", "POST", when="after")
        faults.arm("delay", "/v1/customization/configs", "POST", when="after", delay_s=8)
        faults.arm("reset", "/v1/customization/jobs", "POST", when="after")
        # Transient read failures: retried by the clients.
        faults.arm("status", "/v1/customization/jobs", "GET", status=503, times=2)
        faults.arm("status", "/v1/datasets/[^/]+/[^/]+", "GET", status=502)

        # Run A in a subprocess: it submits the job, then its worker dies hard (SIGKILL: nothing is cancelled).
        args = {
            "base_url": url,
            "assets": TRAINING_ASSETS,
            "run_config": config,
            "dagster_home": str(tmp_path / "dagster_home_a"),
        }
        Path(args["dagster_home"]).mkdir()
        run_a = start_materialize_process(tmp_path / "run_a.json", args, tmp_path / "run_a.log")
        running = wait_for_job_status(url, "customization", {"running"})
        kill_process_group(run_a)
        assert run_a.returncode == -signal.SIGKILL

        # The retry (run B) reattaches to the job that is still running, through resets and 5xx on its polls.
        faults.arm("reset", "/v1/customization/jobs/[^/]+/status", "GET", times=2)
        faults.arm("status", "/v1/customization/jobs/[^/]+/status", "GET", status=500, skip=1)
        instance = DagsterInstance.ephemeral()
        resources = make_resources(url)
        resources["customizer"] = make_resources(url, read_timeout_s=4)["customizer"]
        run_b = materialize_assets(TRAINING_ASSETS, resources, config, instance)
        assert run_b.success, failure_text(run_b)
        tally.runs_completed += 1
        assert run_b.output_for_node("fine_tuned_model").job_id == running["id"]
        assert f"Reattaching to customization job {running['id']} (running)" in run_logs(instance, run_b.run_id)

        # A second materialization reattaches to the completed job and uploads nothing.
        run_c = materialize_assets(TRAINING_ASSETS, resources, config, instance)
        assert run_c.success, failure_text(run_c)
        tally.runs_completed += 1
        assert run_c.output_for_node("fine_tuned_model").job_id == running["id"]

        summary = faults.summary()
        fired = {(e["action"], e["what"].split(" ")[0]) for e in summary["events"]}
        assert {("status", "POST"), ("reset", "POST"), ("delay", "POST"), ("status", "GET"), ("reset", "GET")} <= fired
        tally.faults_injected += summary["injected"]

        # Exactly one of everything, all intact.
        cust_jobs = jobs(url)
        assert [(j["id"], j["status"]) for j in cust_jobs] == [(running["id"], "completed")]
        datasets = list_all(url, "/v1/datasets")
        assert [(d["namespace"], d["name"]) for d in datasets] == [(NAMESPACE, "embed-sft-data")]
        configs = [c for c in list_all(url, "/v1/customization/configs") if c["namespace"] == NAMESPACE]
        assert len(configs) == 1
        models = [m for m in list_all(url, "/v1/models") if m["namespace"] == NAMESPACE]
        assert [f"{m['namespace']}/{m['name']}" for m in models] == [cust_jobs[0]["output_model"]]
        _end_state(url, settings.home, tally)
    _report(capsys, "lost answers + transient errors", tally)
    assert (tally.duplicates, tally.orphans, tally.lost_artifacts) == (0, 0, 0)


def test_failed_job_terminated_run_and_platform_restart(tmp_path, hub_online, capsys):
    """A job failing mid-run fails the asset with its error text; the next run starts one new job; terminating a
    run cancels its job; killing the platform mid-run marks the job failed, keeps everything completed, and the
    rerun finishes."""
    source, data_root = _inputs(tmp_path)
    tally = Tally()
    home = tmp_path / "home"
    port = free_port()
    platform, url = start_platform_process(home, port)
    instance = DagsterInstance.ephemeral()
    resources = make_resources(url)
    config = run_config(source, data_root, experiment="crash", max_steps=3, select=TRAINING_ASSETS)
    try:
        # 1. The training worker dies mid-run with an error: the asset fails with that text.
        detail = "CUDA error: an illegal memory access was encountered (injected)"
        FaultControl(url).fail_job("customization", detail)
        first = materialize_assets(TRAINING_ASSETS, resources, config, instance)
        assert not first.success
        assert detail in failure_text(first)
        tally.runs_failed_as_expected += 1
        assert [j["status"] for j in jobs(url)] == ["failed"]
        failed_id = jobs(url)[0]["id"]

        # 2. The next materialization starts exactly one new job; terminating its run (SIGTERM, as a run launcher
        #    does) cancels that job on the platform.
        args = {
            "base_url": url,
            "assets": TRAINING_ASSETS,
            "run_config": config,
            "dagster_home": str(tmp_path / "dagster_home_term"),
        }
        Path(args["dagster_home"]).mkdir()
        terminated = start_materialize_process(tmp_path / "run_term.json", args, tmp_path / "run_term.log")
        running = wait_for_job_status(url, "customization", {"running"})
        assert running["id"] != failed_id
        terminated.send_signal(signal.SIGTERM)
        assert terminated.wait(timeout=120) != 0
        tally.runs_failed_as_expected += 1
        assert wait_for(
            lambda: (
                harness.get(f"{url}/v1/customization/jobs/{running['id']}", timeout=10).json()["status"]
                in ("cancelled",)
            ),
            "the terminated run's job to be cancelled",
        )
        assert "Run terminated: cancelling" in (tmp_path / "run_term.log").read_text()
        assert sorted(j["status"] for j in jobs(url)) == ["cancelled", "failed"]

        # 3. The platform is killed (with its workers) mid-run and restarted on the same home and port.
        outcome: dict = {}
        thread = threading.Thread(
            target=lambda: outcome.update(result=materialize_assets(TRAINING_ASSETS, resources, config, instance)),
            daemon=True,
        )
        thread.start()
        interrupted = wait_for(
            lambda: next((j for j in jobs(url) if j["status"] == "running"), None), "a running job to interrupt"
        )
        before = {
            "datasets": list_all(url, "/v1/datasets"),
            "configs": list_all(url, "/v1/customization/configs"),
            "repo_files": sorted(
                p.relative_to(home).as_posix() for p in (home / "datastore").rglob("*") if p.is_file()
            ),
        }
        kill_process_group(platform)
        platform, url_again = start_platform_process(home, port)
        assert url_again == url
        thread.join(timeout=300)
        assert not thread.is_alive()
        assert not outcome["result"].success
        tally.runs_failed_as_expected += 1
        doc = harness.get(f"{url}/v1/customization/jobs/{interrupted['id']}", timeout=10).json()
        assert doc["status"] == "failed"
        assert "platform process stopped" in doc["status_logs"][-1]["detail"]
        after = {
            "datasets": list_all(url, "/v1/datasets"),
            "configs": list_all(url, "/v1/customization/configs"),
            "repo_files": sorted(
                p.relative_to(home).as_posix() for p in (home / "datastore").rglob("*") if p.is_file()
            ),
        }
        # Counted before the equality below, so that a loss shows in the tally line and not only in the diff.
        tally.lost_artifacts += sum(len([x for x in before[kind] if x not in after[kind]]) for kind in before)
        assert after == before

        # 4. The rerun finishes with one new job.
        rerun = materialize_assets(TRAINING_ASSETS, resources, config, instance)
        assert rerun.success, failure_text(rerun)
        tally.runs_completed += 1
        statuses = sorted(j["status"] for j in jobs(url))
        assert statuses == ["cancelled", "completed", "failed", "failed"]
        # The faults, as the platform recorded their effects: the injected job failure, the job the terminated run
        # cancelled, the job the killed platform left failed (the restarted one injects none).
        tally.faults_injected += len(_fault_effects(url, "customization", detail))
        _end_state(url, home, tally)
    finally:
        kill_process_group(platform)
    _report(capsys, "failed job + terminated run + platform restart", tally)
    assert (tally.duplicates, tally.orphans, tally.lost_artifacts) == (0, 0, 0)


def test_evaluation_and_deployment_faults(tmp_path, hub_online, capsys):
    """Evaluation: a lost create makes one job, a job failing mid-run fails the asset with its text and the next
    run makes one new job, a terminated run cancels its job. Deployment: never ready -> fails after its timeout."""
    source, data_root = _inputs(tmp_path)
    beir_root = tmp_path / "beir"
    write_beir_set(beir_root)
    tally = Tally()
    with running_platform(tmp_path, enable_faults=True, beir_root=beir_root) as (url, settings):
        faults = FaultControl(url)
        instance = DagsterInstance.ephemeral()
        resources = make_resources(url)
        config = run_config(source, data_root, experiment="evalfaults", select=BASELINE_ASSETS)

        # Lost answer of the evaluation job create, then the job fails mid-run.
        faults.arm("reset", "/v1/evaluation/jobs", "POST", when="after")
        faults.arm("status", "/v1/evaluation/jobs/[^/]+", "GET", status=503, times=2)
        detail = "Evaluator pod evicted: node out of memory (injected)"
        faults.fail_job("evaluation", detail)
        first = materialize_assets(BASELINE_ASSETS, resources, config, instance)
        assert not first.success
        assert detail in failure_text(first)
        tally.runs_failed_as_expected += 1
        assert [j["status"] for j in jobs(url, "evaluation")] == ["failed"]

        second = materialize_assets(BASELINE_ASSETS, resources, config, instance)
        assert second.success, failure_text(second)
        tally.runs_completed += 1
        assert sorted(j["status"] for j in jobs(url, "evaluation")) == ["completed", "failed"]
        assert len(list_all(url, "/v1/deployment/model-deployments")) == 1

        # Terminating the run while the evaluation runs cancels it (a new key: another top_k).
        faults.stall_evaluations(True)
        term_config = run_config(source, data_root, experiment="evalfaults", select=BASELINE_ASSETS)
        term_config["changes"]["evaluation.top_k"] = 5
        args = {
            "base_url": url,
            "assets": BASELINE_ASSETS,
            "run_config": term_config,
            "dagster_home": str(tmp_path / "dagster_home_term"),
        }
        Path(args["dagster_home"]).mkdir()
        terminated = start_materialize_process(tmp_path / "run_term.json", args, tmp_path / "run_term.log")
        running = wait_for_job_status(url, "evaluation", {"running"})
        terminated.send_signal(signal.SIGTERM)
        assert terminated.wait(timeout=120) != 0
        tally.runs_failed_as_expected += 1
        assert wait_for(
            lambda: (
                harness.get(f"{url}/v1/evaluation/jobs/{running['id']}", timeout=10).json()["status"] == "cancelled"
            ),
            "the terminated run's evaluation job to be cancelled",
        )
        faults.stall_evaluations(False)
        assert sorted(j["status"] for j in jobs(url, "evaluation")) == ["cancelled", "completed", "failed"]

        # A deployment that never becomes ready fails after its timeout and says so.
        # The base-model NIM is one deployment shared by every experiment (BASELINE_DEPLOYMENT): the one the
        # second run made ready is the one kept pending here.
        faults.arm(
            "patch_json",
            f"/v1/deployment/model-deployments/{NAMESPACE}/{BASELINE_DEPLOYMENT}",
            "GET",
            times=10_000,
            body={"status_details": {"status": "pending", "description": "waiting for a GPU node (injected)"}},
        )
        never = run_config(source, data_root, experiment="never", deploy_timeout_s=3, select=["baseline_nim"])
        result = materialize_assets(["baseline_nim"], resources, never, instance)
        assert not result.success
        text = failure_text(result)
        assert "did not finish within 3 s" in text
        assert "last status: pending" in text
        tally.runs_failed_as_expected += 1

        # Injected by the fault layer, plus the evaluation job the terminated run cancelled.
        tally.faults_injected += faults.summary()["injected"]
        tally.faults_injected += len([j for j in jobs(url, "evaluation") if j["status"] == "cancelled"])
        tally.orphans += len(orphan_jobs(url))
        tally.duplicates += count_duplicates(
            [j for j in jobs(url, "evaluation") if j["status"] == "completed"],
            key=lambda j: (j.get("custom_fields") or {}).get("embed_ft_idempotency_key"),
        )
    _report(capsys, "evaluation + deployment faults", tally)
    assert (tally.duplicates, tally.orphans, tally.lost_artifacts) == (0, 0, 0)
