"""Where embed-ft keeps its state: the folder names and the variables that move them, defined once.

`homes.py` (the CLI) puts these folders under the checkout's ``.embed_ft/`` and sets the variables; a process
started without them (a bare `dagster dev`, the platform run by hand) falls back to the same names under the
current folder (`fallback`). Stdlib only, the lowest layer, so the platform, the assets and the CLI share it.
"""

from __future__ import annotations

import os
from pathlib import Path

STATE_DIR = ".embed_ft"
DAGSTER_HOME_ENV, DAGSTER_HOME_DIR = "DAGSTER_HOME", "dagster_home"  # run and metric history
PLATFORM_HOME_ENV, PLATFORM_HOME_DIR = "EMBED_FT_HOME", "platform"  # the local platform's state
DATA_ROOT_ENV, DATA_ROOT_DIR = "EMBED_FT_DATA_ROOT", "data"  # snapshots and splits
BEIR_ROOT_ENV, BEIR_DIR = "EMBED_FT_BEIR_ROOT", "beir"  # BEIR sets of file://NAME/ tasks (under a home or shared data)
HELIX_HOME_ENV, HELIX_HOME_DIR = "EMBED_FT_HELIX_HOME", "helix"  # the local NeMo Platform v2 server (--backend helix)
FOLDERS = {
    DAGSTER_HOME_ENV: DAGSTER_HOME_DIR,
    PLATFORM_HOME_ENV: PLATFORM_HOME_DIR,
    DATA_ROOT_ENV: DATA_ROOT_DIR,
    HELIX_HOME_ENV: HELIX_HOME_DIR,
}


def fallback(env: str) -> Path:
    """The folder of ``env`` (one of FOLDERS): the variable when set, else ``./.embed_ft/<name>``, absolute."""
    return Path(os.environ.get(env) or Path.cwd() / STATE_DIR / FOLDERS[env]).expanduser().resolve()
