"""``bench/gpu_check.sh --dry`` (issue 25 item 4): the GPU check's every step on a CPU with tiny sizes, so that the
script is known to work on the day a GPU machine is lent: install (BEIR beside the project), the training bench,
the evaluator-vs-BEIR bench, and the report of their figures beside the CPU ones."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from embed_ft_tests.conftest import REPO_ROOT


@pytest.mark.slow
def test_gpu_check_dry_mode_runs_every_step_on_a_cpu(tmp_path, shared_data):
    env = {
        **os.environ,
        "PYTHON": sys.executable,
        "GPU_CHECK_WORK": str(tmp_path / "work"),
        "GPU_CHECK_OUT": str(tmp_path / "out"),
        "GPU_CHECK_DATA": str(shared_data / "beir" / "scifact"),
    }
    done = subprocess.run(
        ["bash", str(REPO_ROOT / "bench" / "gpu_check.sh"), "--dry"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    steps = [line.split(" ", 2)[2] for line in done.stdout.splitlines() if line.startswith("== ")]
    assert [step.split(":")[0].split(" ")[0] for step in steps] == ["install", "training", "evaluation", "report"]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["mode"] == "dry"
    assert report["device"] == "cpu"
    rows = {row["figure"]: row for row in report["rows"]}
    assert rows["training: ratio platform/plain"]["this_run"] > 0
    assert rows["evaluation: wall-time ratio ours/BEIR"]["this_run"] > 0
    assert rows["evaluation: max |metric - BEIR|"]["this_run"] <= 1e-4
    assert report["runtime"].split(" ")[0] in ("torch", "onnx")
    assert "DRY RUN" in done.stdout
    assert (tmp_path / "out" / "report.txt").is_file()
