"""Where the local platform keeps its state and how it listens."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8765


def default_home() -> Path:
    return Path(os.environ.get("EMBED_FT_HOME") or Path.cwd() / ".embed_ft" / "platform").resolve()


@dataclass
class PlatformSettings:
    home: Path = field(default_factory=default_home)
    beir_root: Path | None = None
    token: str | None = None
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    # Uploads larger than this are refused with 413 (a whole commit body).
    max_upload_bytes: int = 2 * 1024**3
    # Set by tests only: enables the fault-injection routes/middleware.
    enable_faults: bool = False

    def __post_init__(self) -> None:
        self.home = Path(self.home).resolve()
        if self.beir_root is None:
            env_root = os.environ.get("EMBED_FT_BEIR_ROOT")
            self.beir_root = Path(env_root) if env_root else self.home / "beir"
        self.beir_root = Path(self.beir_root).resolve()
        if self.token is None:
            self.token = os.environ.get("EMBED_FT_PLATFORM_TOKEN") or None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

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

    def ensure_dirs(self) -> None:
        for d in (self.home, self.repos_dir, self.models_dir, self.jobs_dir, self.cache_dir):
            d.mkdir(parents=True, exist_ok=True)
