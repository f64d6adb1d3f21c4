"""The core install (`pip install embed-ft`, no `local` extra) is what a NeMo cluster user runs: the clients,
resources, assets and CLI, without torch, sentence-transformers, peft or FastAPI. The cluster image
(deploy/Dockerfile) is that install plus the `prod` extra; its install line and command are run here too."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from embed_ft.definitions import defs

from .deploy_files import dockerfile, image_env, serving_image_command
from .postgres_server import free_port

REPO = Path(__file__).resolve().parents[1]
# What only `embed-ft[local]` installs (directly or through its dependencies).
# (uvicorn and starlette are in the core: dagster-webserver serves with them.)
LOCAL_ONLY = ("torch", "sentence_transformers", "peft", "fastapi", "transformers", "onnxruntime", "pytrec_eval")
# A cluster configuration with loopback placeholders: loading the definitions contacts none of them.
CLUSTER_ENV = {"NDS_URL": "http://127.0.0.1:9", "NEMO_URL": "http://127.0.0.1:9", "NIM_URL": "http://127.0.0.1:9/nim"}


# Imports the definitions and the CLI in a process where the local-only packages cannot be found.
BLOCKED_IMPORT = """
import importlib.abc, importlib.util, sys
blocked = set(sys.argv[1:])
find_spec = importlib.util.find_spec
def find_unblocked(name, package=None):
    return None if name.split(".")[0] in blocked else find_spec(name, package)
importlib.util.find_spec = find_unblocked
class Missing(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name.split(".")[0] in blocked:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
sys.meta_path.insert(0, Missing())
import embed_ft.cli, embed_ft.definitions
embed_ft.definitions.defs.get_repository_def()
print(sorted(name for name in sys.modules if name.split(".")[0] in blocked))
"""


def _run(command: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=900, **kwargs)


def test_definitions_and_cli_import_without_the_local_packages():
    """The quick guard of the same rule (no venv to build): with torch, FastAPI and the rest unfindable, the code
    location and the CLI still load. A module-level import of one of them in the core's path fails here."""
    blocked = [*LOCAL_ONLY, "accelerate", "onnx", "faiss"]
    done = _run([sys.executable, "-c", BLOCKED_IMPORT, *blocked], cwd=REPO, env={**os.environ, **CLUSTER_ENV})
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"


@pytest.mark.slow
def test_core_install_loads_the_definitions_without_torch_and_the_cluster_image_serves_them(tmp_path):
    """A fresh venv gets the checkout without extras (pinned by constraints.txt; uv installs it, from its cache on
    a second run): nothing of the local platform is importable, the code location loads and `dg check defs`
    passes against a cluster configuration, and `embed-ft platform serve` says what to install. Then the cluster
    image's install line adds `prod`, and the image's command serves the code location."""
    venv = tmp_path / "core-venv"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    python, bin_dir = venv / "bin" / "python", venv / "bin"
    uv = Path(sys.executable).with_name("uv")  # the test extra's; pip takes minutes for the same install
    installed = _run(
        [str(uv), "pip", "install", "--quiet", "--python", str(python), "-c", str(REPO / "constraints.txt"), str(REPO)]
    )
    assert installed.returncode == 0, installed.stdout[-3000:] + installed.stderr[-3000:]

    probe = "import importlib.util as u, sys; print(' '.join(m for m in sys.argv[1:] if u.find_spec(m)))"
    present = _run([str(python), "-c", probe, *LOCAL_ONLY], cwd=tmp_path)
    assert present.returncode == 0, present.stderr
    assert present.stdout.split() == []

    env = {
        **os.environ,
        **CLUSTER_ENV,
        "DAGSTER_HOME": str(tmp_path),
        "NO_COLOR": "1",
        "VIRTUAL_ENV": str(venv),
        "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("PYTHONPATH", None)  # the installed package, not the checkout
    (tmp_path / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    loaded = _run(
        [
            str(python),
            "-c",
            "import sys, embed_ft.definitions as d; d.defs.get_repository_def(); "
            "print(sorted(m for m in ('torch', 'fastapi', 'sentence_transformers') if m in sys.modules))",
        ],
        cwd=tmp_path,
        env=env,
    )
    assert loaded.returncode == 0, loaded.stderr[-3000:]
    assert loaded.stdout.strip().splitlines()[-1] == "[]"

    checked = _run([str(bin_dir / "dg"), "check", "defs", "--use-active-venv"], cwd=REPO, env=env)
    assert checked.returncode == 0, checked.stdout[-3000:] + checked.stderr[-3000:]
    assert "All definitions loaded successfully" in checked.stdout + checked.stderr

    serve = _run([str(bin_dir / "embed-ft"), "platform", "serve"], cwd=tmp_path, env=env)
    assert serve.returncode == 2
    assert "pip install 'embed-ft[local]'" in serve.stderr

    # The cluster image: its install line (pip run as uv's, in the image's WORKDIR layout: the checkout) on top of
    # the core, then its CMD with its ENV (paths under tmp_path), serving every job, still without torch.
    (install,) = dockerfile()["install"]["cluster"]
    assert install[:2] == ["pip", "install"]
    image_install = _run([str(uv), "pip", "install", "--quiet", "--python", str(python), *install[2:]], cwd=REPO)
    assert image_install.returncode == 0, image_install.stdout[-3000:] + image_install.stderr[-3000:]
    image = {**env, **image_env(tmp_path / "image")}
    Path(image["DAGSTER_HOME"]).mkdir(parents=True)
    with serving_image_command(bin_dir, free_port(), image, cwd=tmp_path) as served:
        assert {job.name for job in defs.resolve_all_job_defs()} <= served
    present = _run([str(python), "-c", probe, *LOCAL_ONLY, "dagster_postgres", "dagster_k8s"], cwd=tmp_path)
    assert present.stdout.split() == ["dagster_postgres", "dagster_k8s"]
