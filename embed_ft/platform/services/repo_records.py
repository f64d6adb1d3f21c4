"""The records of a Data Store repo on disk (``repo.json``, ``commits/<commit>.json``), read and checked.

A record that cannot be read (truncated, empty, not the shape the platform writes) raises ``DamagedRepoError``
(409) naming the file and how to remove the repo, instead of a 500 from every route; ``check_repo`` is what the
start-up runs on every repo, and ``orphan_snapshots`` finds the snapshot folders no commit names.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import ConflictError


class DamagedRepoError(ConflictError):
    """A record of the repo on disk cannot be read; the message names the file and how to remove the repo."""


def _record_problem(value: Any, kind: str) -> str | None:
    """What is wrong with a decoded ``repo.json`` (kind "meta") or commit manifest (kind "manifest"), or None."""
    if not isinstance(value, dict):
        return f"holds a JSON {type(value).__name__}, not an object"
    if kind == "manifest":
        bad = next(
            (
                p
                for p, m in value.items()
                if not (isinstance(m, dict) and isinstance(m.get("oid"), str) and isinstance(m.get("size"), int))
            ),
            None,
        )
        return None if bad is None else f"has no oid/size for {bad!r}"
    missing = [k for k in ("type", "namespace", "name", "created_at", "head", "commits") if k not in value]
    if missing:
        return f"lacks {', '.join(missing)}"
    commits = value["commits"]
    if not isinstance(commits, list) or not all(
        isinstance(c, dict) and isinstance(c.get("id"), str) and isinstance(c.get("date"), str) for c in commits
    ):
        return "has a commit list that is not a list of commit records"
    if value["head"] is not None and value["head"] not in {c["id"] for c in commits}:
        return f"names head {value['head']!r}, which is not one of its commits"
    return None


def read_record(rdir: Path, relative: str, kind: str) -> Any:
    """A JSON record of the repo in ``rdir``; ``DamagedRepoError`` naming the file when it cannot be read."""
    path = rdir / relative
    try:
        value = json.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        if kind == "meta":
            raise
        problem: str | None = "is missing"
    except (ValueError, RecursionError) as exc:
        problem = f"is not valid JSON ({type(exc).__name__}: {str(exc)[:120]})"
    else:
        problem = _record_problem(value, kind)
    if problem:
        repo = "/".join(rdir.parts[-3:])
        raise DamagedRepoError(
            f"the Data Store repo {repo} is damaged: {path} {problem}. Delete the repo to remove "
            "it (DELETE /v1/hf/api/repos/delete, or huggingface_hub's delete_repo)"
        )
    return value


def load_meta(rdir: Path) -> dict[str, Any] | None:
    try:
        meta: dict[str, Any] = read_record(rdir, "repo.json", "meta")
    except FileNotFoundError:
        return None
    return meta


def load_manifest(rdir: Path, commit: str) -> dict[str, dict[str, Any]]:
    manifest: dict[str, dict[str, Any]] = read_record(rdir, f"commits/{commit}.json", "manifest")
    return manifest


def check_repo(rdir: Path) -> None:
    """``DamagedRepoError`` naming the file when the records of the repo in ``rdir`` (its ``repo.json`` and its head
    manifest) cannot be read; nothing when they can (or the folder holds no repo)."""
    meta = load_meta(rdir)
    if meta is not None and meta["head"]:
        load_manifest(rdir, meta["head"])


def orphan_snapshots(rdir: Path) -> list[Path]:
    """The finished snapshot folders of the repo in ``rdir`` that no commit names (a commit killed after its
    snapshot was renamed into place and before ``repo.json`` was replaced). Only under the home's lock."""
    meta = load_meta(rdir)
    if meta is None or not (rdir / "snapshots").is_dir():
        return []
    named = {c["id"] for c in meta["commits"]}
    return sorted(p for p in (rdir / "snapshots").iterdir() if not p.name.startswith(".") and p.name not in named)
