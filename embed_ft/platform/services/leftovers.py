"""What a killed platform leaves behind, cleaned when the next one opens the home (it holds the home's lock then,
and no job runs yet).

- ``datastore/<type>s/<ns>/<name>/staging/<uuid>/``: uploads of a commit in progress (the commit never happened);
- ``datastore/<type>s/<ns>/<name>/snapshots/.<commit>.building/``: a snapshot whose commit point (the rename of
  ``repo.json``) was never reached; ``datastore/.trash/``: repos whose delete was interrupted;
- ``datastore/<type>s/<ns>/<name>/snapshots/<commit>/`` that no commit of ``repo.json`` names: a commit killed
  after its snapshot was renamed into place but before its commit point;
- ``models/.<job>.partial/``: a model the training worker was saving when it died;
- ``models/cust-.../`` with no Entity Store model pointing at it: the worker renamed it into place but the
  platform died before registering it. Its job was marked failed by restart recovery (a failed job has no model),
  so the folder is **removed**, not registered: registering it would make a failed job's model appear.

A repo whose records cannot be read is left as it is (nothing of it is removed) and named by ``damaged_repos``.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from ..settings import PlatformSettings
from ..store import EntityStore
from .entities import MODEL_KIND
from .model_weights import model_doc_path
from .repo_records import DamagedRepoError, check_repo, orphan_snapshots
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


def _repo_folders(settings: PlatformSettings) -> list[Path]:
    return [
        repo
        for plural in REPO_TYPES
        for namespace in _children(settings.repos_dir / plural)
        for repo in _children(namespace)
    ]


def _repo_leftovers(settings: PlatformSettings, removed: list[str]) -> None:
    for trashed in _children(settings.repos_dir / ".trash"):
        _remove(trashed, "a repo delete that was interrupted", removed)
    for repo in _repo_folders(settings):
        for staged in _children(repo / "staging"):
            _remove(staged, "uploads of a commit that never happened", removed)
        for snapshot in _children(repo / "snapshots"):
            if snapshot.name.startswith(".") and snapshot.name.endswith(".building"):
                _remove(snapshot, "a snapshot whose commit never happened", removed)
        try:
            orphans = orphan_snapshots(repo)
        except DamagedRepoError:
            continue  # named by damaged_repos; nothing of a repo that cannot be read is removed
        for snapshot in orphans:
            _remove(snapshot, "a snapshot no commit names (its commit never happened)", removed)


def damaged_repos(settings: PlatformSettings) -> list[tuple[str, str]]:
    """(``<type>s/<ns>/<name>``, what is wrong and how to remove it) of every repo whose records cannot be read."""
    damaged = []
    for repo in _repo_folders(settings):
        try:
            check_repo(repo)
        except DamagedRepoError as exc:
            log.error("%s", exc)
            damaged.append(("/".join(repo.parts[-3:]), str(exc)))
    return damaged


def _model_leftovers(settings: PlatformSettings, store: EntityStore, removed: list[str]) -> None:
    registered = set()

    def register(_: str, doc: dict[str, Any]) -> None:
        path = model_doc_path(doc)
        if path is not None:
            registered.add(str(path.resolve()))

    store.each_row(MODEL_KIND, register, "finding the weights of registered models")
    set_aside = store.quarantined_data(MODEL_KIND)  # a model row set aside may still name its folder: keep it
    for child in _children(settings.models_dir):
        if child.name.startswith(".") and child.name.endswith(".partial"):
            _remove(child, "a model whose save was interrupted", removed)
        elif (
            child.name.startswith(JOB_MODEL_PREFIX)
            and str(child.resolve()) not in registered
            and not any(child.name in text for text in set_aside)
        ):
            _remove(
                child, "a job's model folder that no Entity Store model points at (its job did not complete)", removed
            )


def clean_crash_leftovers(settings: PlatformSettings, store: EntityStore) -> list[str]:
    """Remove what a killed platform left behind (see the module docstring); returns the removed paths."""
    removed: list[str] = []
    _repo_leftovers(settings, removed)
    _model_leftovers(settings, store, removed)
    return removed
