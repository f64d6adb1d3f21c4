"""Where the local platform keeps its state and how it listens."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from ..state_layout import BEIR_DIR, BEIR_ROOT_ENV, PLATFORM_HOME_ENV, fallback

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765
# The NIM routes (``/v1/embeddings``, the served-model ``/v1/models``) live under this path prefix, so that NIM_URL
# and NEMO_URL are separate bases as on a cluster (docs/NEMO_CONTRACT.md, "Base URLs").
NIM_PATH_PREFIX = "/nim"


def service_urls(base_url: str) -> dict[str, str]:
    """The three base URLs of a local platform answering at ``base_url``: NDS_URL, NEMO_URL and NIM_URL."""
    base = base_url.rstrip("/")
    return {"NDS_URL": base, "NEMO_URL": base, "NIM_URL": f"{base}{NIM_PATH_PREFIX}"}


def default_home() -> Path:
    return fallback(PLATFORM_HOME_ENV)


@dataclass
class PlatformSettings:
    home: Path = field(default_factory=default_home)
    beir_root: Path | None = None
    token: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # Uploads larger than this are refused with 413 (a whole commit body).
    max_upload_bytes: int = 2 * 1024**3
    # Every other request body (JSON routes, preupload, forms) larger than this is refused with 413.
    max_json_body_bytes: int = 1024**2
    # One /v1/embeddings request: at most this many inputs and this many characters in all (413 beyond).
    max_embedding_inputs: int = 2048
    max_embedding_chars: int = 1_000_000
    # An evaluation's request to an embeddings endpoint that answers nothing for this long fails the job (a stalled
    # endpoint holds the evaluation queue at most this long; a cancel does not wait for it).
    evaluation_request_timeout_s: float = 300.0
    # A client whose request (head or body) stops arriving for this long is disconnected (``serve`` only).
    client_read_timeout_s: float = 30.0
    # Model deployments loading or serving at once (each holds its model in memory): 409 beyond, naming the limit.
    max_deployments: int = 16
    # A BEIR file an evaluation reads (a .gz file: decompressed) larger than this fails the job naming it.
    max_dataset_file_bytes: int = 512 * 1024**2
    # Folders outside the home from which customization targets may load weights (besides the home's models,
    # Data Store and cache folders and the bundled model): trusted by the operator, never named by a request.
    # $EMBED_FT_MODEL_ROOTS, os.pathsep-separated, when not given.
    model_roots: tuple[Path, ...] | None = None
    # The NeMo Platform v2 Files service whose filesets v2 automodel jobs train on (its base URL, e.g. a local
    # `nemo-helix`): $EMBED_FT_V2_FILES_URL when not given; without it a v2 job's create answers 422.
    v2_files_url: str | None = None
    # One v2 job's training data fetched from there: at most this many files and bytes (the Data Store's upload cap).
    max_fileset_files: int = 10_000
    max_fileset_bytes: int = 2 * 1024**3

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        if self.beir_root is None:
            env_root = os.environ.get(BEIR_ROOT_ENV)
            self.beir_root = Path(env_root) if env_root else self.home / BEIR_DIR
        self.beir_root = Path(self.beir_root).resolve()
        if self.model_roots is None:
            env_roots = os.environ.get("EMBED_FT_MODEL_ROOTS", "")
            self.model_roots = tuple(Path(p) for p in env_roots.split(os.pathsep) if p)
        self.model_roots = tuple(Path(p).resolve() for p in self.model_roots)
        if self.v2_files_url is None:
            self.v2_files_url = os.environ.get("EMBED_FT_V2_FILES_URL") or None
        if self.token is None:
            self.token = os.environ.get("EMBED_FT_PLATFORM_TOKEN") or None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def nim_url(self) -> str:
        """NIM_URL of this platform: the base URL plus ``NIM_PATH_PREFIX``."""
        return service_urls(self.base_url)["NIM_URL"]

    # Sub-folders of the home.
    @property
    def db_path(self) -> Path:
        return self.home / "state.sqlite3"

    @property
    def repos_dir(self) -> Path:
        return self.home / "datastore"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def jobs_dir(self) -> Path:
        return self.home / "jobs"

    @property
    def cache_dir(self) -> Path:
        return self.home / "cache"

    @property
    def model_store_roots(self) -> tuple[Path, ...]:
        """Where a customization target's weights may be: the home's stores and the operator's ``model_roots``."""
        return (self.models_dir, self.repos_dir, self.cache_dir, *(self.model_roots or ()))

    @property
    def runtimes_dir(self) -> Path:
        """The `auto` inference runtime's calibrations (services/runtime_calibration.py)."""
        return self.cache_dir / "runtimes"

    def ensure_dirs(self) -> None:
        """Create the home and its folders, private to this user (0700; an older home is made so too)."""
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.home.chmod(0o700)
        for d in (self.repos_dir, self.models_dir, self.jobs_dir, self.cache_dir):
            d.mkdir(mode=0o700, parents=True, exist_ok=True)
