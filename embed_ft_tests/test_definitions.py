"""The code location loads, validates, and its asset graph is the one operators rely on (a snapshot)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml
from dagster import AssetKey, Definitions

from embed_ft.definitions import defs

REPO = Path(__file__).resolve().parents[1]

EXPECTED_DEPS = {
    "specter_raw": set(),
    "specter_triplets": {"specter_raw"},
    "training_dataset": {"specter_triplets"},
    "fine_tuned_model": {"training_dataset"},
    "fine_tuned_nim": {"fine_tuned_model"},
    "baseline_nim": set(),
    "heldout_eval_dataset": {"specter_triplets"},
    "baseline_evaluation": {"baseline_nim", "heldout_eval_dataset"},
    "fine_tuned_evaluation": {"fine_tuned_nim", "heldout_eval_dataset"},
    "evaluation_report": {"baseline_evaluation", "fine_tuned_evaluation"},
}
EXPECTED_GROUPS = {
    "specter_raw": "data",
    "specter_triplets": "data",
    "training_dataset": "training",
    "fine_tuned_model": "training",
    "fine_tuned_nim": "serving",
    "baseline_nim": "serving",
    "heldout_eval_dataset": "evaluation",
    "baseline_evaluation": "evaluation",
    "fine_tuned_evaluation": "evaluation",
    "evaluation_report": "evaluation",
}


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
        assert node.code_version, f"{name} has no code_version"
    pools = {k.to_user_string(): graph.get(k).pools for k in graph.get_all_asset_keys()}
    assert pools["fine_tuned_model"] == {"nemo_customizer"}
    assert pools["fine_tuned_nim"] == pools["baseline_nim"] == {"nemo_deployment"}
    assert pools["baseline_evaluation"] == pools["fine_tuned_evaluation"] == {"nemo_evaluator"}
    check_names = {k.name for k in graph.asset_check_keys}
    assert "fine_tuned_beats_baseline" in check_names
    for job in ("full_lineage_job", "teardown_deployments_job", "data_refresh_job"):
        assert defs.resolve_job_def(job) is not None


def test_code_location_name_is_the_same_everywhere():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    workspace = yaml.safe_load((REPO / "workspace.yaml").read_text())
    location = workspace["load_from"][0]["python_module"]
    assert pyproject["tool"]["dagster"]["code_location_name"] == location["location_name"] == "embed_ft"
    assert pyproject["tool"]["dagster"]["module_name"] == location["module_name"] == "embed_ft.definitions"


def test_dagster_definitions_validate_cli(tmp_path):
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-m", "dagster", "definitions", "validate", "-w", str(REPO / "workspace.yaml")],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
