"""Where the CLI keeps its state, the same from any folder of a checkout.

The project root is the nearest folder, walking up from the current one, whose ``pyproject.toml`` names the
project ``embed-ft``; outside a checkout it is the per-user folder ``~/.embed_ft``. Under it, ``.embed_ft/`` holds
``dagster_home`` (run and metric history), ``platform`` (the local platform's state) and ``data`` (snapshots and
splits). Each is used only when its variable (``DAGSTER_HOME``, ``EMBED_FT_HOME``, ``EMBED_FT_DATA_ROOT``) is unset.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .data.errors import SourceError
from .data.public_beir import FillState, download_line, fill_beir_folder, fill_state
from .spec.experiment import PRESET_DATA_ENV, SHARED_DATA_ENV
from .state_layout import (
    BEIR_DIR,
    BEIR_ROOT_ENV,
    DAGSTER_HOME_ENV,
    DATA_ROOT_ENV,
    FOLDERS,
    PLATFORM_HOME_ENV,
    STATE_DIR,
)

PROJECT_NAME = "embed-ft"
PUBLIC_DATA_DIR = "public-data"
# One slot per pool: one job at a time per GPU service, so concurrent runs cannot oversubscribe it.
DAGSTER_YAML = "concurrency:\n  pools:\n    default_limit: 1\ntelemetry:\n  enabled: false\n"


def project_root(start: Optional[Path] = None) -> Optional[Path]:
    """The embed-ft checkout containing ``start`` (default: the current folder), or None."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        pyproject = folder / "pyproject.toml"
        if not pyproject.is_file():
            continue
        try:
            name = tomllib.loads(pyproject.read_text("utf-8")).get("project", {}).get("name")
        except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError):
            continue
        if name == PROJECT_NAME:
            return folder
    return None


def state_root(start: Optional[Path] = None) -> Path:
    """``<project root>/.embed_ft``, or ``~/.embed_ft`` outside a checkout."""
    root = project_root(start)
    return root / STATE_DIR if root is not None else Path.home() / STATE_DIR


def shared_data_dir(start: Optional[Path] = None) -> Path:
    """The data folder shipped beside the repository: $EMBED_FT_SHARED_DATA, else ``<project root>/../shared/data``."""
    if os.environ.get(SHARED_DATA_ENV):
        return Path(os.environ[SHARED_DATA_ENV]).expanduser().resolve()
    root = project_root(start) or Path.cwd().resolve()
    return root.parent / "shared" / "data"


def public_data_dir(start: Optional[Path] = None) -> Path:
    """Where a preset's data is laid out when no shared data folder is beside the checkout:
    ``<state root>/public-data``, the same layout as the shared folder (``beir/scifact/...``), filled from the Hub."""
    return state_root(start) / PUBLIC_DATA_DIR


def preset_data_dir(start: Optional[Path] = None) -> Path:
    """The folder a preset's data paths resolve in: the shared data folder when $EMBED_FT_SHARED_DATA is set or
    ``../shared/data`` exists (the local location), else `public_data_dir` (the public one: the Hub)."""
    shared = shared_data_dir(start)
    if os.environ.get(SHARED_DATA_ENV) or shared.is_dir():
        return shared
    return public_data_dir(start)


@dataclass(frozen=True)
class Homes:
    dagster_home: Path
    platform_home: Path
    data_root: Path
    beir_root: Optional[Path]

    def lines(self) -> list[str]:
        return [
            f"history (DAGSTER_HOME): {self.dagster_home}",
            f"local platform state (EMBED_FT_HOME): {self.platform_home}",
        ]


def apply_default_homes(start: Optional[Path] = None) -> Homes:
    """Set the unset state variables to the project's folders (see the module docstring) and return them all.

    Also sets ``EMBED_FT_PRESET_DATA`` (what ``{shared}`` in a spec's ``data.source`` stands for) to
    `preset_data_dir`, points ``EMBED_FT_BEIR_ROOT``, when unset, at ``<shared data>/beir`` when that folder exists
    (as ``./dev`` does), else at ``<public data>/beir`` (where the Hub's sets are laid out), and writes
    DAGSTER_HOME's ``dagster.yaml`` on first use.
    """
    root = state_root(start)
    for name, folder in FOLDERS.items():
        if not os.environ.get(name):
            os.environ[name] = str(root / folder)
    data_dir = preset_data_dir(start)
    os.environ[PRESET_DATA_ENV] = str(data_dir)  # always this checkout's: a stale value must not leak in
    data_beir = data_dir / BEIR_DIR
    public = data_beir.parent == public_data_dir(start)
    if not os.environ.get(BEIR_ROOT_ENV) and (data_beir.is_dir() or public):
        os.environ[BEIR_ROOT_ENV] = str(data_beir.resolve())
    dagster_home = Path(os.environ[DAGSTER_HOME_ENV]).expanduser().resolve()
    dagster_home.mkdir(parents=True, exist_ok=True)
    os.environ[DAGSTER_HOME_ENV] = str(dagster_home)
    if not (dagster_home / "dagster.yaml").exists():
        (dagster_home / "dagster.yaml").write_text(DAGSTER_YAML)
    beir = os.environ.get(BEIR_ROOT_ENV)
    return Homes(
        dagster_home=dagster_home,
        platform_home=Path(os.environ[PLATFORM_HOME_ENV]).expanduser().resolve(),
        data_root=Path(os.environ[DATA_ROOT_ENV]).expanduser().resolve(),
        beir_root=Path(beir).expanduser().resolve() if beir else None,
    )


def fill_preset_data(source: Optional[str], download: bool) -> tuple[str, Optional[str]]:
    """Before preflight: a preset's BEIR data that is not on this machine is laid out from the Hub cache, or
    downloaded into it (huggingface_hub's progress bars) when ``download``. Returns (one line for people, or "";
    a problem, or None). An offline Hub without the cache is preflight's to report."""
    state = fill_state(source) if source else None
    if source is None or state not in (FillState.CACHED, FillState.DOWNLOAD):
        return "", None
    if state is FillState.DOWNLOAD and not download:
        return f"data: not on this machine; a run downloads {download_line(source)}", None
    line = f"data: {'downloading' if state is FillState.DOWNLOAD else 'from the Hub cache:'} {download_line(source)}"
    try:
        fill_beir_folder(source)
    except SourceError as exc:
        return line, str(exc)
    return line, None
