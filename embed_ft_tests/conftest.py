"""Suite-wide settings: no network beyond loopback, no user state leaking in."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

from .helix_server import running_helix

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def pytest_configure(config):
    # The Hugging Face Hub is unreachable here: fail fast instead of retrying, and never read a user's token.
    scratch = Path(tempfile.mkdtemp(prefix="embed-ft-tests-"))
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
    for name in ("NDS_URL", "NEMO_URL", "NIM_URL", "NEMO_TOKEN", "NDS_TOKEN", "NIM_TOKEN", "WANDB_API_KEY"):
        os.environ.pop(name, None)


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
