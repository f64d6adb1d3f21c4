"""The deployment files (deploy/) agree with the code and with each other, without a container or a cluster:

- the image's command is the code location (pyproject's module), the command Dagster's Helm chart runs for the
  values' user deployment, on the port the image exposes, as a non-root user;
- both image variants install with constraints.txt, as ./dev and CI do (test_core_install.py runs the cluster
  variant's install in a fresh venv, then the image's command with its environment);
- every environment variable the code reads is set by the Helm values (tokens from the Kubernetes Secret), or is
  listed below with the reason a cluster does not need it;
- deploy/dagster.yaml is a valid Dagster instance config, and the Helm values carry the same limits;
- the single server's systemd units run the image's command on loopback and read one environment file that sets
  every variable the instance config reads, and docs/DEPLOYMENT.md installs and starts every unit.

The same instance config is run for real, on PostgreSQL, in test_deployment_postgres.py.
"""

from __future__ import annotations

import ast
import re
import shlex
import tomllib
from pathlib import Path
from typing import Any

import yaml
from dagster._core.instance.config import dagster_instance_config

from embed_ft.cli import QUIET_ENV
from embed_ft.definitions import defs

from .deploy_files import DEPLOY, REPO, dockerfile
from .python_source import parse_file

PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text("utf-8"))
ENV_NAME = re.compile(r"^(NDS|NEMO|NIM|HF|WANDB|EMBED_FT|DAGSTER)_[A-Z0-9_]+$")
SECRET_NAME = "embed-ft-nemo"
# Variables the code reads that a cluster deployment leaves unset, and why.
NOT_FOR_A_CLUSTER = {
    "EMBED_FT_HOME": "the embedded local platform's home; on a cluster the NeMo URLs are set",
    "EMBED_FT_BEIR_ROOT": "BEIR sets of the embedded platform's evaluator; NeMo's evaluator has its own",
    "EMBED_FT_SHARED_DATA": "the data folder beside a checkout, read by the CLI's presets",
    "EMBED_FT_SPECTER_SOURCE": "optional: unset, the source sensor watches the source specter_raw was built from",
    "EMBED_FT_SPECTER_REVISION": "optional, with EMBED_FT_SPECTER_SOURCE",
    "DAGSTER_HOME": "set by the chart (dagsterHome) and the image",
    "NEMO_EVALUATOR_URL": "optional: the Evaluator on its own (v2) server; unset, NEMO_URL's",
    "NEMO_CUSTOMIZER_URL": "optional: a Customizer served apart from NEMO_URL (--backend helix: the embedded platform)",
    "NEMO_DEPLOYMENT_URL": "optional: deployments served apart from NEMO_URL (--backend helix: the embedded platform)",
    "EMBED_FT_HELIX_HOME": "the local NeMo Platform v2 server of `--backend helix`: its state folder",
    "EMBED_FT_HELIX_VENV": "the local NeMo Platform v2 server of `--backend helix`: its venv",
    "EMBED_FT_V2_FILES_URL": "the embedded platform's Files service (`--backend helix` sets it to the local Helix)",
}
# Variables embed-ft sets itself: switches for libraries, and EMBED_FT_PRESET_DATA (homes.py, on every command).
SET_BY_THE_CODE = {
    "EMBED_FT_PRESET_DATA",
    "HF_HUB_DISABLE_PROGRESS_BARS",
    "HF_HUB_DISABLE_XET",
    "HF_HUB_OFFLINE",
    "HF_DATASETS_OFFLINE",
    "WANDB_DISABLED",
    "NEMO_TELEMETRY_ENABLED",  # in the environment embed_ft/helix.py gives the local Helix server
}


# ------------------------------------------------------------------------------------------------ parsing


def helm_values() -> dict[str, Any]:
    return yaml.safe_load((DEPLOY / "helm" / "values.yaml").read_text("utf-8"))


def user_deployment() -> dict[str, Any]:
    deployments = helm_values()["dagster-user-deployments"]["deployments"]
    assert len(deployments) == 1
    return deployments[0]


def env_read_by_the_code() -> dict[str, set[str]]:
    """Every variable name spelled out in embed_ft/ -> the modules that name it."""
    found: dict[str, set[str]] = {}
    for path in (REPO / "embed_ft").rglob("*.py"):
        for node in ast.walk(parse_file(path)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and ENV_NAME.match(node.value):
                found.setdefault(node.value, set()).add(str(path.relative_to(REPO)))
    return found


# Reads whose variable name is not spelled at the call (a loop or a parameter), and where the names come from.
INDIRECT_READS = {
    ("embed_ft/cli.py", "key"): "QUIET_ENV: library switches the CLI sets and restores",
    ("embed_ft/resources.py", "name"): "_env(NAME): its callers spell NAME",
    ("embed_ft/homes.py", "name"): "state_layout.FOLDERS' variables",
    ("embed_ft/state_layout.py", "env"): "state_layout.FOLDERS' variables",
}


def _string_constants(tree: ast.Module) -> dict[str, str]:
    """Module-level NAME = "..." and NAME, OTHER = "...", "..." assignments."""
    found: dict[str, str] = {}
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            pairs = (
                zip(target.elts, node.value.elts, strict=True)
                if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple)
                else [(target, node.value)]
            )
            for name, value in pairs:
                if isinstance(name, ast.Name) and isinstance(value, ast.Constant) and isinstance(value.value, str):
                    found[name.id] = value.value
    return found


def env_reads_outside_the_platform() -> tuple[set[str], set[tuple[str, str]]]:
    """Every os.environ[...] / .get / .pop / .setdefault, os.getenv and EnvVar/_env call in embed_ft/ (but the
    embedded platform): the variable names they spell (directly or as a module constant of embed_ft), and the
    (module, argument) of those that name none."""
    trees = {p: parse_file(p) for p in (REPO / "embed_ft").rglob("*.py")}
    constants = {name: value for tree in trees.values() for name, value in _string_constants(tree).items()}
    named: set[str] = set()
    indirect: set[tuple[str, str]] = set()
    for path, tree in trees.items():
        module = str(path.relative_to(REPO))
        if module.startswith("embed_ft/platform/"):
            continue
        for node in ast.walk(tree):
            arg = None
            if (
                isinstance(node, ast.Subscript)
                and isinstance(node.value, ast.Attribute)
                and node.value.attr == "environ"
            ):
                arg = node.slice
            elif isinstance(node, ast.Call) and node.args:
                func = node.func
                environ_method = (
                    isinstance(func, ast.Attribute)
                    and func.attr in ("get", "pop", "setdefault")
                    and isinstance(func.value, ast.Attribute)
                    and func.value.attr == "environ"
                )
                if environ_method or (isinstance(func, ast.Attribute) and func.attr == "getenv"):
                    arg = node.args[0]
                elif isinstance(func, ast.Name) and func.id in ("EnvVar", "getenv", "_env"):
                    arg = node.args[0]
            if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                named.add(arg.value)
            elif isinstance(arg, ast.Name) and arg.id in constants:
                named.add(constants[arg.id])
            elif arg is not None:
                indirect.add((module, ast.unparse(arg)))
    return named, indirect


def test_the_scan_for_variables_sees_every_variable_the_code_reads():
    """env_read_by_the_code finds names by their prefixes; every read in the code is of such a name, or an indirect
    read listed (with where its names come from) in INDIRECT_READS."""
    named, indirect = env_reads_outside_the_platform()
    assert {"NDS_URL", "NEMO_TOKEN", "EMBED_FT_BEIR_ROOT", "DAGSTER_HOME"} <= named  # the scan works
    assert sorted(n for n in named if not ENV_NAME.match(n)) == []
    assert indirect == set(INDIRECT_READS), "an indirect environment read: list it in INDIRECT_READS, with why"
    assert set(QUIET_ENV) - {n for n in QUIET_ENV if ENV_NAME.match(n)} == {"TQDM_DISABLE", "TRANSFORMERS_VERBOSITY"}


# ------------------------------------------------------------------------------------------------ the image


def test_the_image_runs_the_code_location_as_the_chart_starts_it_as_a_non_root_user():
    image, deployment = dockerfile(), user_deployment()
    module = PYPROJECT["tool"]["dagster"]["module_name"]
    assert deployment["codeServerArgs"] == ["-m", module]
    # The chart's deployment-user.yaml:
    #   args: ["dagster", "code-server", "start", "-h", "0.0.0.0", "-p", port, *codeServerArgs]
    assert image["cmd"] == [
        "dagster",
        "code-server",
        "start",
        "-h",
        "0.0.0.0",
        "-p",
        str(deployment["port"]),
        *deployment["codeServerArgs"],
    ]
    assert image["expose"] == [deployment["port"]]
    uid, _, gid = image["user"].partition(":")
    assert int(uid) != 0
    assert int(gid) != 0
    security = deployment["podSecurityContext"]
    assert (security["runAsNonRoot"], security["runAsUser"], security["runAsGroup"]) == (True, int(uid), int(gid))
    # The chart mounts the instance config into DAGSTER_HOME; the image and the chart agree on where that is.
    assert image["env"]["DAGSTER_HOME"] == "/opt/dagster/dagster_home"
    storage = [m for m in deployment["volumeMounts"] if m["mountPath"] == image["env"]["DAGSTER_HOME"] + "/storage"]
    assert len(storage) == 1  # asset values shared between run pods
    data = [m for m in deployment["volumeMounts"] if m["mountPath"] == image["env"]["EMBED_FT_DATA_ROOT"]]
    assert len(data) == 1


def dev_setting(name: str) -> str:
    """A top-level NAME=value (or NAME="${X:-value}") of ./dev."""
    match = re.search(rf'^{name}="?(?:\$\{{\w+:-)?([^"}}\n]+)', (REPO / "dev").read_text("utf-8"), re.MULTILINE)
    assert match is not None, name
    return match.group(1)


def test_both_image_variants_install_pinned_by_the_constraints_as_dev_does():
    image = dockerfile()
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"dagster-postgres", "dagster-k8s"} <= {re.split(r"[<>=!~ ]", d)[0] for d in extras["prod"]}
    assert "constraints.txt" in image["copy"]
    # cluster: no torch (the NeMo cluster trains, serves and evaluates); local: CPU torch first, from its own index,
    # exactly the version ./dev pins, then the project with the embedded platform.
    assert image["install"] == {
        "cluster": [["pip", "install", "-c", "constraints.txt", ".[prod]"]],
        "local": [
            ["pip", "install", "torch==${TORCH_VERSION}", "--index-url", "$TORCH_INDEX"],
            ["pip", "install", "-c", "constraints.txt", ".[prod,local]"],
        ],
    }
    assert image["args"]["TORCH_VERSION"] == dev_setting("TORCH_VERSION")
    assert image["args"]["TORCH_INDEX"] == dev_setting("TORCH_CPU_INDEX")
    assert {"prod", "local"} <= set(dev_setting("EXTRAS").split(","))  # what ./dev and CI install and test
    constraints = (REPO / "constraints.txt").read_text("utf-8")
    assert f"\ntorch=={dev_setting('TORCH_VERSION')}\n" in constraints
    ignored = (REPO / ".dockerignore").read_text("utf-8").split()
    assert ignored[ignored.index("*") + 1 : ignored.index("*") + 5] == [
        "!pyproject.toml",
        "!README.md",
        "!constraints.txt",
        "!embed_ft/",
    ]


# ------------------------------------------------------------------------------------------------ helm values


def test_every_variable_the_code_reads_is_set_by_the_helm_values_or_needs_no_cluster():
    deployment = user_deployment()
    plain = {e["name"]: e["value"] for e in deployment["env"] if "value" in e}
    from_secret = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in deployment["env"] if "valueFrom" in e}
    secret = yaml.safe_load((DEPLOY / "helm" / "embed-ft-nemo-secret.yaml").read_text("utf-8"))
    assert secret["metadata"]["name"] == SECRET_NAME
    for name, ref in from_secret.items():
        assert (ref["name"], ref["key"], ref["optional"]) == (SECRET_NAME, name, True)
        assert ref["key"] in secret["stringData"], f"{name}: no such key in the Secret"
    # Tokens only ever come from the Secret, never as a value in the values file.
    assert {n for n in plain if n.endswith(("_TOKEN", "_KEY"))} == set()
    assert set(from_secret) == {
        "NDS_TOKEN",
        "NEMO_TOKEN",
        "NIM_TOKEN",
        "HF_TOKEN",
        "WANDB_API_KEY",
        "NEMO_EVALUATOR_TOKEN",
    }

    read = env_read_by_the_code()
    # The embedded platform is the local backend; a cluster deployment never runs it.
    cluster_side = {
        name: modules for name, modules in read.items() if any(not m.startswith("embed_ft/platform/") for m in modules)
    }
    unaccounted = sorted(set(cluster_side) - set(plain) - set(from_secret) - set(NOT_FOR_A_CLUSTER) - SET_BY_THE_CODE)
    assert unaccounted == [], f"read by the code but neither set by deploy/helm/values.yaml nor exempted: {unaccounted}"
    assert set(NOT_FOR_A_CLUSTER) <= set(read), "an exemption for a variable the code no longer reads"
    for name in ("NDS_URL", "NEMO_URL", "NIM_URL"):
        assert plain[name].startswith("http://")  # a cluster: the embedded platform is never started on demand
    assert plain["EMBED_FT_DATA_ROOT"] == dockerfile()["env"]["EMBED_FT_DATA_ROOT"]


def test_the_helm_values_carry_the_instance_settings_of_deploy_dagster_yaml():
    values = helm_values()
    instance = yaml.safe_load((DEPLOY / "dagster.yaml").read_text("utf-8"))
    concurrency = values["concurrency"]
    assert concurrency["enabled"] is True
    assert concurrency["pools"] == {
        "defaultLimit": instance["concurrency"]["pools"]["default_limit"],
        "granularity": instance["concurrency"]["pools"]["granularity"],
        "opGranularityRunBuffer": instance["concurrency"]["pools"]["op_granularity_run_buffer"],
    }
    assert concurrency["runs"]["maxConcurrentRuns"] == instance["concurrency"]["runs"]["max_concurrent_runs"]
    assert concurrency["runs"]["tagConcurrencyLimits"] == instance["concurrency"]["runs"]["tag_concurrency_limits"]
    daemon = values["dagsterDaemon"]
    assert daemon["runCoordinator"]["type"] == instance["run_coordinator"]["class"] == "QueuedRunCoordinator"
    monitoring = instance["run_monitoring"]
    assert daemon["runMonitoring"]["enabled"] is monitoring["enabled"] is True
    for snake, camel in (
        ("start_timeout_seconds", "startTimeoutSeconds"),
        ("cancel_timeout_seconds", "cancelTimeoutSeconds"),
        ("poll_interval_seconds", "pollIntervalSeconds"),
        ("free_slots_after_run_end_seconds", "freeSlotsAfterRunEndSeconds"),
    ):
        assert daemon["runMonitoring"][camel] == monitoring[snake]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["postgresqlHost"]
    assert values["postgresql"]["postgresqlScheme"] == instance["storage"]["postgres"]["postgres_db"]["scheme"]
    assert values["global"]["postgresqlSecretName"] == "dagster-postgresql-secret"
    assert values["generatePostgresqlPasswordSecret"] is False  # the password is never in the values


def test_the_pools_in_the_instance_config_are_the_pools_the_gpu_stages_declare():
    declared = {
        node.pool for job in defs.resolve_all_job_defs() for node in job.graph.node_defs if getattr(node, "pool", None)
    }
    assert declared == {"nemo_customizer", "nemo_deployment", "nemo_evaluator"}
    text = (DEPLOY / "dagster.yaml").read_text("utf-8")
    for pool in declared:
        assert pool in text  # named where the limit is set, with the command that raises it
    assert "dagster instance concurrency set" in text


def test_the_instance_config_is_valid_for_dagster_and_reads_the_connection_from_the_environment(tmp_path, monkeypatch):
    (tmp_path / "dagster.yaml").write_text((DEPLOY / "dagster.yaml").read_text("utf-8"))
    for name, value in {
        "DAGSTER_PG_HOST": "127.0.0.1",
        "DAGSTER_PG_PORT": "5432",
        "DAGSTER_PG_DB": "dagster",
        "DAGSTER_PG_USERNAME": "u",
        "DAGSTER_PG_PASSWORD": "p",
    }.items():
        monkeypatch.setenv(name, value)
    config, _ = dagster_instance_config(str(tmp_path))
    assert config["storage"]["postgres"]["postgres_db"]["password"] == {"env": "DAGSTER_PG_PASSWORD"}
    assert config["run_coordinator"]["class"] == "QueuedRunCoordinator"
    assert config["run_monitoring"]["enabled"] is True
    workspace = yaml.safe_load((DEPLOY / "workspace.yaml").read_text("utf-8"))
    server = workspace["load_from"][0]["grpc_server"]
    assert server["location_name"] == PYPROJECT["tool"]["dagster"]["code_location_name"]
    assert (server["host"], server["port"]) == ("127.0.0.1", dockerfile()["expose"][0])


# ------------------------------------------------------------------------------------------------ single server


def systemd_unit(name: str) -> dict[str, str]:
    """The [Service] section of deploy/systemd/NAME.service."""
    section, parsed = "", {}
    for line in (DEPLOY / "systemd" / f"{name}.service").read_text("utf-8").splitlines():
        if line.startswith("["):
            section = line.strip("[]")
        elif section == "Service" and "=" in line and not line.startswith("#"):
            key, _, value = line.partition("=")
            parsed[key] = value
    return parsed


def test_the_systemd_units_run_the_image_command_and_read_one_environment():
    code_server = shlex.split(systemd_unit("embed-ft-code-server")["ExecStart"])
    image = dockerfile()["cmd"]
    assert Path(code_server[0]).name == image[0]
    expected = [*image[1:]]
    expected[expected.index("-h") + 1] = "127.0.0.1"  # one machine: loopback only
    assert code_server[1:] == expected
    workspace = "/etc/embed-ft/workspace.yaml"
    assert shlex.split(systemd_unit("embed-ft-webserver")["ExecStart"])[-2:] == ["-w", workspace]
    assert shlex.split(systemd_unit("embed-ft-daemon")["ExecStart"])[1:] == ["run", "-w", workspace]
    env_file = DEPLOY / "systemd" / "embed-ft.env"
    variables = dict(
        line.split("=", 1) for line in env_file.read_text("utf-8").splitlines() if line and not line.startswith("#")
    )
    instance_text = (DEPLOY / "dagster.yaml").read_text("utf-8")
    read_by_the_instance = set(re.findall(r"env: (\w+)", instance_text))
    assert read_by_the_instance == {
        "DAGSTER_PG_HOST",
        "DAGSTER_PG_PORT",
        "DAGSTER_PG_DB",
        "DAGSTER_PG_USERNAME",
        "DAGSTER_PG_PASSWORD",
    }
    assert read_by_the_instance <= set(variables)
    units = sorted(p.stem for p in (DEPLOY / "systemd").glob("*.service"))
    for unit in units:
        assert systemd_unit(unit)["EnvironmentFile"] == "/etc/embed-ft/embed-ft.env"
        assert systemd_unit(unit)["User"] == "embed-ft"
    recipe = (REPO / "docs" / "DEPLOYMENT.md").read_text("utf-8")
    assert "install -m 0600 embed-ft/deploy/systemd/embed-ft.env /etc/embed-ft/embed-ft.env" in recipe
    started = re.search(r"systemctl enable --now (.+)", recipe)
    assert started is not None
    assert sorted(started.group(1).split()) == units
