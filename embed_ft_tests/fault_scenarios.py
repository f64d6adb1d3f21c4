"""Helpers of the reliability tests and of ``bench/bench_faults.py``: fault control, lineage runs, a tally.

Also a small command line, run as a subprocess by the tests:

    python -m embed_ft_tests.fault_scenarios serve --home H --port P [--beir-root B]
        the real platform with fault injection enabled (the normal `serve` has no way to enable it)
    python -m embed_ft_tests.fault_scenarios materialize ARGS.json
        one Dagster materialization against a platform (killed or terminated by the test while it runs)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import requests

from embed_ft.profiles import LOCAL

REPO_ROOT = Path(__file__).absolute().parents[1]
LOCAL_TARGET = LOCAL.target
LOCAL_BASE_MODEL = LOCAL.base_model
TRAINING_ASSETS = ["specter_raw", "mined_triplets", "specter_triplets", "training_dataset", "fine_tuned_model"]
BASELINE_ASSETS = [
    "specter_raw",
    "mined_triplets",
    "specter_triplets",
    "heldout_eval_dataset",
    "baseline_nim",
    "baseline_evaluation",
]
WAIT_S = 240.0
EXPERIMENT_KEY = "_experiment"  # the experiment (partition) of the run, see materialize_assets
DATA_ROOT_KEY = "_data_root"
# The harness's own requests (watching the platform) are never faulted and never use up a rule.
harness = requests.Session()
harness.headers["x-embed-ft-fault-exempt"] = "1"


# ------------------------------------------------------------------------------------------- fault control


class FaultControl:
    """Client of a platform's ``/_faults`` API (the platform must run with ``embed_ft_tests/faults.py`` mounted)."""

    def __init__(self, base_url: str, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    def _call(self, method: str, path: str, body: Any = None) -> dict:
        response = harness.request(
            method, f"{self.base_url}/_faults{path}", json=body, headers=self.headers, timeout=30
        )
        response.raise_for_status()
        return response.json()

    def arm(self, action: str, path: str, method: str = "*", **options: Any) -> dict:
        return self._call("POST", "/rules", {"action": action, "path": path, "method": method, **options})

    def clear(self) -> None:
        self._call("DELETE", "/rules")

    def rules(self) -> list[dict]:
        return self._call("GET", "/rules")["data"]

    def summary(self) -> dict:
        return self._call("GET", "/summary")

    def fail_job(self, kind: str, detail: str, job_id: str | None = None, after_s: float = 0.0) -> dict:
        body: dict[str, Any] = {"kind": kind, "detail": detail, "after_s": after_s}
        if job_id:
            body["job_id"] = job_id
        return self._call("POST", "/jobs/fail", body)

    def stall_evaluations(self, on: bool = True) -> None:
        self._call("POST" if on else "DELETE", "/jobs/stall")


# ------------------------------------------------------------------------------------------- platform state


def list_all(base_url: str, path: str, token: str | None = None) -> list[dict]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    response = harness.get(f"{base_url}{path}", params={"page_size": 1000}, headers=headers, timeout=30)
    response.raise_for_status()
    return response.json()["data"]


def jobs(base_url: str, kind: str = "customization", token: str | None = None) -> list[dict]:
    return list_all(base_url, f"/v1/{kind}/jobs", token)


def wait_for(predicate, what: str, timeout_s: float = WAIT_S, interval_s: float = 0.2):
    """Poll ``predicate()`` until it returns something truthy; bounded."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")


def wait_for_job_status(
    base_url: str, kind: str, statuses: Iterable[str], token: str | None = None, timeout_s: float = WAIT_S
) -> dict:
    wanted = set(statuses)

    def find():
        try:
            return next((j for j in jobs(base_url, kind, token) if j["status"] in wanted), None)
        except requests.RequestException:
            return None

    return wait_for(find, f"a {kind} job in status {sorted(wanted)}", timeout_s)


# --------------------------------------------------------------------------------------------- lineage runs


def run_config(
    source: Path,
    data_root: Path,
    experiment: str = "faults",
    max_steps: int = 3,
    poll_s: float = 0.3,
    deploy_timeout_s: float | None = None,
    eval_tasks: Iterable[str] = ("file://tinybeir/",),
    select: Iterable[str] | None = None,
) -> dict:
    """The spec changes of the lineage with explicit local-platform values (target, base model, tasks), tiny and
    fast, on the smoke preset; ``select`` is accepted for the callers' readability (the spec is whole).

    ``experiment`` is the partition key of the experiment assets: kept under `EXPERIMENT_KEY`, which
    `materialize_assets` takes out and passes as the run's partition; ``data_root`` becomes EMBED_FT_DATA_ROOT."""
    changes = {
        "data.source": str(source),
        "split.test_size": 8,
        "split.validation_size": 0.15,
        "split.seed": 7,
        "training.target": LOCAL_TARGET,
        "training.max_steps": max_steps,
        "training.batch_size": 8,
        "training.learning_rate": 5e-5,
        "training.max_seq_length": 64,
        "serving.base_model": LOCAL_BASE_MODEL,
        "evaluation.tasks": list(eval_tasks),
        "remote.poll_interval_s": poll_s,
        **({"remote.deployment_timeout_s": deploy_timeout_s} if deploy_timeout_s else {}),
    }
    return {"changes": changes, EXPERIMENT_KEY: experiment, DATA_ROOT_KEY: str(data_root)}


def make_resources(
    base_url: str,
    token: str | None = None,
    read_timeout_s: float = 60.0,
    hf_token: str | None = None,
    wandb_api_key: str | None = None,
) -> dict:
    from embed_ft.platform.settings import service_urls
    from embed_ft.resources import (
        CustomizerResource,
        DataStoreResource,
        DeploymentResource,
        EntityStoreResource,
        EvaluatorResource,
        NimResource,
    )

    common = dict(base_url=base_url, token=token, read_timeout_s=read_timeout_s)
    return {
        "datastore": DataStoreResource(**common, hf_token=hf_token),
        "entity_store": EntityStoreResource(**common),
        "customizer": CustomizerResource(**common, wandb_api_key=wandb_api_key),
        "deployment": DeploymentResource(**common),
        "evaluator": EvaluatorResource(**common),
        "nim": NimResource(**{**common, "base_url": service_urls(base_url)["NIM_URL"]}),  # NIM routes: own prefix
    }


def materialize_assets(names: list[str], resources: dict, config: dict, instance, raise_on_error: bool = False):
    """Store the experiment's spec (the smoke preset with ``config["changes"]``), then materialize ``names`` with it."""
    from dagster import AssetKey, materialize

    from embed_ft.definitions import lineage_assets
    from embed_ft.defs.experiment_spec import EXPERIMENT_TAG, experiment_spec
    from embed_ft.defs.experiments import EXPERIMENTS, prepare_experiment_run

    experiment = config.get(EXPERIMENT_KEY) or "faults"
    saved = os.environ.get("EMBED_FT_DATA_ROOT")
    if config.get(DATA_ROOT_KEY):
        os.environ["EMBED_FT_DATA_ROOT"] = config[DATA_ROOT_KEY]
    try:
        spec_config = prepare_experiment_run(instance, experiment, "smoke", config["changes"])
        stored = materialize(
            [experiment_spec],
            resources={"customizer": resources["customizer"]},
            run_config=spec_config,
            instance=instance,
            partition_key=experiment,
            raise_on_error=raise_on_error,
        )
        if not stored.success:
            return stored
        partitioned = any(
            a.partitions_def == EXPERIMENTS for a in lineage_assets if set(a.keys) & {AssetKey(n) for n in names}
        )
        return materialize(
            lineage_assets,
            selection=names,
            resources=resources,
            instance=instance,
            raise_on_error=raise_on_error,
            partition_key=experiment if partitioned else None,
            tags={EXPERIMENT_TAG: experiment},
        )
    finally:
        if saved is None:
            os.environ.pop("EMBED_FT_DATA_ROOT", None)
        else:
            os.environ["EMBED_FT_DATA_ROOT"] = saved


def failure_text(result) -> str:
    """Every step failure's message (and its cause chain) of a materialization result, joined."""
    texts = []
    for event in result.all_events:
        if event.event_type_value == "STEP_FAILURE":
            error = event.event_specific_data.error
            while error is not None:
                texts.append(error.message)
                error = error.cause
    return "\n".join(texts)


def run_logs(instance, run_id: str) -> str:
    return "\n".join(entry.user_message for entry in instance.all_logs(run_id))


# ---------------------------------------------------------------------------------- subprocesses (platform, run)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def start_platform_process(home: Path, port: int, beir_root: Path | None = None, log_file: Path | None = None):
    """The platform (faults enabled) as a subprocess in its own session, so that the test can kill all of it."""
    cmd = [sys.executable, "-m", "embed_ft_tests.fault_scenarios", "serve", "--home", str(home), "--port", str(port)]
    if beir_root is not None:
        cmd += ["--beir-root", str(beir_root)]
    out = open(log_file or (Path(home).parent / f"platform-{port}.log"), "ab")
    process = subprocess.Popen(
        cmd, cwd=REPO_ROOT, env=child_env(), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"

    def healthy():
        if process.poll() is not None:
            raise AssertionError(f"platform process exited with {process.returncode}; see {out.name}")
        try:
            return harness.get(f"{url}/health", timeout=2).status_code == 200
        except requests.RequestException:
            return False

    wait_for(healthy, f"the platform on port {port}", timeout_s=120)
    return process, url


def kill_process_group(process: subprocess.Popen, sig: int = signal.SIGKILL) -> None:
    """Kill a subprocess started with ``start_new_session`` and every process of its session (workers)."""
    try:
        os.killpg(process.pid, sig)
    except ProcessLookupError:
        pass
    process.wait(timeout=60)


def start_materialize_process(args_file: Path, args: dict[str, Any], log_file: Path) -> subprocess.Popen:
    args_file.write_text(json.dumps(args))
    return subprocess.Popen(
        [sys.executable, "-m", "embed_ft_tests.fault_scenarios", "materialize", str(args_file)],
        cwd=REPO_ROOT,
        env={**child_env(), "DAGSTER_HOME": args["dagster_home"]},
        stdout=open(log_file, "ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


# ---------------------------------------------------------------------------------------------- the tally


@dataclass
class Tally:
    """What the fault scenarios did and what they found (printed by the tests and the bench)."""

    faults_injected: int = 0
    runs_completed: int = 0
    runs_failed_as_expected: int = 0
    duplicates: int = 0
    orphans: int = 0
    lost_artifacts: int = 0
    notes: list[str] = field(default_factory=list)

    def add_faults(self, control: FaultControl) -> None:
        self.faults_injected += control.summary()["injected"]

    def line(self) -> str:
        return (
            f"faults injected: {self.faults_injected}, runs completed: {self.runs_completed}, "
            f"runs failed as expected: {self.runs_failed_as_expected}, duplicates: {self.duplicates}, "
            f"orphans: {self.orphans}, lost artifacts: {self.lost_artifacts}"
        )


def count_duplicates(items: list[dict], key) -> int:
    seen: dict[Any, int] = {}
    for item in items:
        k = key(item)
        seen[k] = seen.get(k, 0) + 1
    return sum(n - 1 for n in seen.values())


def orphan_jobs(base_url: str, token: str | None = None) -> list[str]:
    """Jobs still active although no run waits on them (call when every run has ended)."""
    active = {"created", "pending", "running", "cancelling"}
    return [
        j["id"]
        for kind in ("customization", "evaluation")
        for j in jobs(base_url, kind, token)
        if j["status"] in active
    ]


def lost_artifacts(base_url: str, home: Path, token: str | None = None) -> list[str]:
    """Completed customization jobs whose output model entity or weights folder is missing."""
    lost = []
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    for job in jobs(base_url, "customization", token):
        if job["status"] != "completed":
            continue
        ns, rest = job["output_model"].split("/", 1)
        if harness.get(f"{base_url}/v1/models/{ns}/{rest}", headers=headers, timeout=30).status_code != 200:
            lost.append(f"{job['id']}: model entity {job['output_model']}")
        if not (Path(home) / "models" / job["id"]).is_dir():
            lost.append(f"{job['id']}: weights folder")
    return lost


# ------------------------------------------------------------------------------------------------- CLI


def _serve(args: argparse.Namespace) -> None:
    import uvicorn

    from embed_ft.platform.app import create_app
    from embed_ft.platform.settings import PlatformSettings
    from embed_ft_tests.faults import install as install_faults

    settings = PlatformSettings(
        home=Path(args.home),
        port=args.port,
        host="127.0.0.1",
        beir_root=Path(args.beir_root) if args.beir_root else None,
    )
    app = create_app(settings, extensions=[install_faults])
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning")


def _materialize(args: argparse.Namespace) -> int:
    from dagster import DagsterInstance

    from embed_ft.resources import resources_for_v2

    spec = json.loads(Path(args.args_file).read_text())
    if spec.get("v2_platform_url"):  # the v2 profile: that NeMo Platform, and our platform's v2 routes at base_url
        resources = resources_for_v2(spec["v2_platform_url"], spec["base_url"])
    else:
        resources = make_resources(spec["base_url"], token=spec.get("token"))
    result = materialize_assets(spec["assets"], resources, spec["run_config"], DagsterInstance.get())
    print(f"run {result.run_id} success={result.success}", flush=True)
    return 0 if result.success else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m embed_ft_tests.fault_scenarios")
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve")
    serve.add_argument("--home", required=True)
    serve.add_argument("--port", type=int, required=True)
    serve.add_argument("--beir-root")
    run = commands.add_parser("materialize")
    run.add_argument("args_file")
    args = parser.parse_args(argv)
    if args.command == "serve":
        _serve(args)
        return 0
    return _materialize(args)


if __name__ == "__main__":
    sys.exit(main())
