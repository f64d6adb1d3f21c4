"""What a killed platform leaves behind, cleaned when the next one opens the home (it holds the home's lock then,
and no job runs yet).

- ``datastore/<type>s/<ns>/<name>/staging/<uuid>/``: uploads of a commit in progress (the commit never happened);
- ``datastore/<type>s/<ns>/<name>/snapshots/.<commit>.building/``: a snapshot whose commit point (the rename of
  ``repo.json``) was never reached; ``datastore/.trash/``: repos whose delete was interrupted;
- ``models/.<job>.partial/``: a model the training worker was saving when it died;
- ``models/cust-.../`` with no Entity Store model pointing at it: the worker renamed it into place but the
  platform died before registering it. Its job was marked failed by restart recovery (a failed job has no model),
  so the folder is **removed**, not registered: registering it would make a failed job's model appear.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from ..settings import PlatformSettings
from ..store import EntityStore
from .entities import MODEL_KIND
from .model_weights import model_doc_path
from .repo_store import REPO_TYPES

log = logging.getLogger("embed_ft.platform.leftovers")

JOB_MODEL_PREFIX = "cust-"


def _children(folder: Path) -> list[Path]:
    try:
        return sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove(path: Path, why: str, removed: list[str]) -> None:
    log.warning("removing %s (%s)", path, why)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    removed.append(str(path))


def _repo_leftovers(settings: PlatformSettings, removed: list[str]) -> None:
    root = settings.repos_dir
    for trashed in _children(root / ".trash"):
        _remove(trashed, "a repo delete that was interrupted", removed)
    for plural in REPO_TYPES:
        for namespace in _children(root / plural):
            for repo in _children(namespace):
                for staged in _children(repo / "staging"):
                    _remove(staged, "uploads of a commit that never happened", removed)
                for snapshot in _children(repo / "snapshots"):
                    if snapshot.name.startswith(".") and snapshot.name.endswith(".building"):
                        _remove(snapshot, "a snapshot whose commit never happened", removed)


def _model_leftovers(settings: PlatformSettings, store: EntityStore, removed: list[str]) -> None:
    registered = set()
    for doc in store.list(MODEL_KIND):
        path = model_doc_path(doc)
        if path is not None:
            registered.add(str(path.resolve()))
    for child in _children(settings.models_dir):
        if child.name.startswith(".") and child.name.endswith(".partial"):
            _remove(child, "a model whose save was interrupted", removed)
        elif child.name.startswith(JOB_MODEL_PREFIX) and str(child.resolve()) not in registered:
            _remove(child, "a job's model folder that no Entity Store model points at (its job did not complete)",
                    removed)


def clean_crash_leftovers(settings: PlatformSettings, store: EntityStore) -> list[str]:
    """Remove what a killed platform left behind (see the module docstring); returns the removed paths."""
    removed: list[str] = []
    _repo_leftovers(settings, removed)
    _model_leftovers(settings, store, removed)
    return removed
