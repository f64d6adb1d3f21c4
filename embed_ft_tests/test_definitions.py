"""The code location loads, validates (`dg check defs`, no SupersessionWarning), `embed-ft ui` serves it with
`dg dev`, and its asset graph is the one operators rely on (a snapshot: deps, groups, partitions, owners, tags)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import tomllib
from pathlib import Path

import pytest
import requests
import yaml
from dagster import AssetKey, Definitions

from embed_ft.definitions import defs
from embed_ft.foreground import STOP_GRACE_S

REPO = Path(__file__).resolve().parents[1]

EXPECTED_DEPS = {
    "experiment_spec": set(),
    "preflight": {"experiment_spec"},
    "specter_source": set(),
    "specter_raw": {"specter_source", "preflight"},
    "mined_triplets": {"specter_raw"},
    "specter_triplets": {"mined_triplets"},
    "training_dataset": {"specter_triplets"},
    "fine_tuned_model": {"training_dataset", "experiment_spec"},
    "fine_tuned_nim": {"fine_tuned_model"},
    "baseline_nim": {"preflight"},
    "heldout_eval_dataset": {"specter_triplets"},
    "baseline_evaluation": {"baseline_nim", "heldout_eval_dataset"},
    "fine_tuned_evaluation": {"fine_tuned_nim", "heldout_eval_dataset"},
    "evaluation_report": {"baseline_evaluation", "fine_tuned_evaluation"},
    "experiment_leaderboard": {"evaluation_report"},
}
EXPECTED_GROUPS = {
    "experiment_spec": "experiment",
    "preflight": "preflight",
    "specter_source": "data",
    "specter_raw": "data",
    "mined_triplets": "data",
    "specter_triplets": "data",
    "training_dataset": "training",
    "fine_tuned_model": "training",
    "fine_tuned_nim": "serving",
    "baseline_nim": "serving",
    "heldout_eval_dataset": "evaluation",
    "baseline_evaluation": "evaluation",
    "fine_tuned_evaluation": "evaluation",
    "evaluation_report": "evaluation",
    "experiment_leaderboard": "evaluation",
}
EXPERIMENT_PARTITIONED = {
    "experiment_spec",
    "fine_tuned_model",
    "fine_tuned_nim",
    "fine_tuned_evaluation",
    "evaluation_report",
}
GPU_STAGES = {"fine_tuned_model", "fine_tuned_nim", "baseline_nim", "baseline_evaluation", "fine_tuned_evaluation"}


def test_definitions_validate_loadable():
    Definitions.validate_loadable(defs)


def test_asset_graph_snapshot():
    graph = defs.resolve_asset_graph()
    keys = {k.to_user_string() for k in graph.get_all_asset_keys()}
    assert keys == set(EXPECTED_DEPS)
    for name, deps in EXPECTED_DEPS.items():
        node = graph.get(AssetKey(name))
        assert {p.to_user_string() for p in node.parent_keys} == deps, name
        assert node.group_name == EXPECTED_GROUPS[name], name
        if name not in {"specter_source", "preflight"}:  # observed, not computed / checks only
            assert node.code_version, f"{name} has no code_version"
        partitions = node.partitions_def.name if node.partitions_def else None
        assert partitions == ("experiments" if name in EXPERIMENT_PARTITIONED else None), name
        if name not in {"specter_source", "mined_triplets", "preflight"}:
            assert node.owners == ["team:embed-ft"], name
            assert node.tags.get("compute") == ("gpu" if name in GPU_STAGES else "cpu"), name
    pools = {k.to_user_string(): graph.get(k).pools for k in graph.get_all_asset_keys()}
    assert pools["fine_tuned_model"] == {"nemo_customizer"}
    assert pools["fine_tuned_nim"] == pools["baseline_nim"] == {"nemo_deployment"}
    assert pools["baseline_evaluation"] == pools["fine_tuned_evaluation"] == {"nemo_evaluator"}
    check_names = {k.name for k in graph.asset_check_keys}
    assert "fine_tuned_beats_baseline" in check_names
    assert {k.asset_key.to_user_string() for k in graph.asset_check_keys if k.name == "deployment_live"} == {
        "fine_tuned_nim",
        "baseline_nim",
    }
    assert defs.resolve_job_def("full_lineage_job").partitions_def.name == "experiments"
    assert defs.resolve_job_def("data_refresh_job").partitions_def is None
    for job in ("full_lineage_job", "experiment_job", "teardown_deployments_job", "data_refresh_job"):
        assert defs.resolve_job_def(job) is not None


def test_code_location_name_is_the_same_everywhere():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    location = workspace["load_from"][0]["python_module"]
    dg_project = pyproject["tool"]["dg"]["project"]
    assert pyproject["tool"]["dg"]["directory_type"] == "project"
    for name in (
        pyproject["tool"]["dagster"]["code_location_name"],
        location["location_name"],
        dg_project["code_location_name"],
    ):
        assert name == "embed_ft"
    for module in (
        pyproject["tool"]["dagster"]["module_name"],
        location["module_name"],
        dg_project["code_location_target_module"],
    ):
        assert module == "embed_ft.definitions"
    assert dg_project["root_module"] == "embed_ft"


def dg_env(dagster_home: Path) -> dict[str, str]:
    """This interpreter's environment as the active one (dg compares it with the project's .venv)."""
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), "NO_COLOR": "1"}
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
        env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    return env


@pytest.mark.slow  # 5 s: dg check defs as a subprocess
def test_dg_check_defs(tmp_path):
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    proc = subprocess.run(
        [str(Path(sys.executable).with_name("dg")), "check", "defs", "--use-active-venv"],
        cwd=REPO,
        env=dg_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=600,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, output
    assert "All definitions loaded successfully" in output
    assert "SupersessionWarning" not in output
    assert "Warning" not in output, output  # no dg, Beta or Preview warning either


def test_workspace_yaml_still_loads_for_dagster_webserver_users(tmp_path):
    """`dagster-webserver -w workspace.yaml` users: the workspace file loads the same location (no `dagster dev`)."""
    from dagster._core.workspace.load_target import WorkspaceFileTarget

    origins = WorkspaceFileTarget(paths=[str(REPO / "workspace.yaml")]).create_origins()
    assert [o.location_name for o in origins] == ["embed_ft"]


@pytest.mark.slow
def test_embed_ft_ui_runs_dg_dev_without_supersession_warning(tmp_path):
    """`embed-ft ui` (no local platform: NEMO_URL points at a closed port) serves the code location via `dg dev`."""
    port = free_port()
    log = tmp_path / "ui.log"
    env = {
        **dg_env(tmp_path / "dagster_home"),
        "NEMO_URL": "http://127.0.0.1:9",
        "NDS_URL": "http://127.0.0.1:9",
        "NIM_URL": "http://127.0.0.1:9",
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "embed_ft.cli", "ui", "--port", str(port)],
            cwd=tmp_path,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + 240
        locations = None
        while time.monotonic() < deadline and proc.poll() is None:
            try:
                answer = requests.post(
                    f"http://127.0.0.1:{port}/graphql",
                    json={"query": "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus } } } }"},
                    timeout=5,
                )
                entries = answer.json()["data"]["workspaceOrError"]["locationEntries"]
                if entries and entries[0]["loadStatus"] == "LOADED":
                    locations = [e["name"] for e in entries]
                    break
            except (requests.RequestException, KeyError, TypeError, ValueError):
                pass
            time.sleep(1)
        assert locations == ["embed_ft"], log.read_text(errors="replace")[-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
            try:
                # embed-ft ui is gone within STOP_GRACE_S of the signal. This wait was 60 s while the command took up
                # to 2 x 30 s, so the SIGKILL below could come first and leave the dg dev tree running under init.
                proc.wait(timeout=STOP_GRACE_S + 90)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)  # dg dev then gets SIGTERM, its parent-death signal
                proc.wait(timeout=60)
    output = log.read_text(errors="replace")
    assert "SupersessionWarning" not in output
    assert "dagster dev" not in output


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
