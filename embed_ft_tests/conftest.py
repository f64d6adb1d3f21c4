"""Suite-wide settings: no network beyond loopback, no user state leaking in; in CI, no test skips; no test leaves
processes running (embed_ft_tests/process_guard.py)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from embed_ft.helix import running_helix
from embed_ft_tests import process_guard

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
# Set by .ci/run: CI can meet every condition a test skips on (the shared data beside the clone, the optional
# packages of the test install, Chromium), so there a skip is a failure. `./dev test` lists skips with reasons (-rs).
REQUIRE_ALL = "EMBED_FT_REQUIRE_ALL"


def pytest_configure(config):
    # The Hugging Face Hub is unreachable here: fail fast instead of retrying, and never read a user's token.
    scratch = Path(tempfile.mkdtemp(prefix="embed-ft-tests-"))
    process_guard.start_session()  # every process started from here on carries this session's token
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HOME"] = str(scratch / "hf_home")
    os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"
    os.environ.pop("HF_TOKEN", None)
    os.environ["TOKENIZERS_PARALLELISM"] = "false"
    # Tests start their own platforms on their own homes; never touch a developer's.
    os.environ["EMBED_FT_HOME"] = str(scratch / "platform_home")
    os.environ["DAGSTER_HOME"] = str(scratch / "dagster_home")
    os.environ["EMBED_FT_DATA_ROOT"] = str(scratch / "data")
    (scratch / "dagster_home").mkdir(parents=True, exist_ok=True)
    for name in (
        "NDS_URL",
        "NEMO_URL",
        "NIM_URL",
        "NEMO_TOKEN",
        "NDS_TOKEN",
        "NIM_TOKEN",
        "WANDB_API_KEY",
        "NEMO_EVALUATOR_URL",
        "NEMO_EVALUATOR_TOKEN",
        "EMBED_FT_NEMO_API",
    ):
        os.environ.pop(name, None)


# No test leaves processes running: the leaked-process guard's hooks (embed_ft_tests/process_guard.py).
pytest_runtest_teardown = process_guard.pytest_runtest_teardown
pytest_sessionfinish = process_guard.pytest_sessionfinish
pytest_terminal_summary = process_guard.pytest_terminal_summary


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def helix(tmp_path_factory):
    """NVIDIA's NeMo Platform server (`nemo-helix`, pinned in .ci/install-helix) running on 127.0.0.1 for the whole
    session, with all its state in a temporary folder; stopped by its process group at the end."""
    with running_helix(tmp_path_factory.mktemp("helix")) as server:
        yield server


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """Under EMBED_FT_REQUIRE_ALL a skip (pytest.skip, importorskip, a skip marker) fails the test with its reason."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and os.environ.get(REQUIRE_ALL) and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
        report.outcome = "failed"
        report.longrepr = f"skipped, but {REQUIRE_ALL} is set (CI meets every skip condition): {reason}"
