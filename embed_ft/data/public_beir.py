"""A BEIR folder that is not on this machine, filled from the Hugging Face Hub (the public location of a preset's
data): downloaded once into the Hub cache, with progress, then laid out as the same BEIR files.

A folder ``<anything>/beir/<name>`` of a set the Hub publishes (`formats.beir_hub.KNOWN_SETS`: SciFact) that does
not exist is *fillable*. `fill_state` says, without writing or downloading, whether it is there, can be laid out
from the Hub cache, needs a download, or cannot be had (the Hub is offline); `fill_beir_folder` makes it so.
Pure Python, no Dagster.
"""

from __future__ import annotations

import enum
from pathlib import Path
from typing import Optional

from ..formats.beir import CORPUS_FILE, QUERIES_FILE
from ..formats.beir_hub import KNOWN_SETS, HubBeirSet, HubLayoutError, describe_download, is_laid_out, lay_out_beir
from .errors import SourceError


class FillState(enum.Enum):
    READY = "ready"  # the folder holds the set
    CACHED = "cached"  # the Hub cache holds it: laid out without the network
    DOWNLOAD = "download"  # it will be downloaded
    UNAVAILABLE = "unavailable"  # not cached, and the Hub is offline


FILLABLE = (FillState.CACHED, FillState.DOWNLOAD)  # states `fill_beir_folder` turns into READY


def public_beir_set(folder: str | Path) -> Optional[HubBeirSet]:
    """The Hub set a folder ``.../beir/<name>`` stands for, or None when it is no such folder."""
    path = Path(folder).expanduser()
    return KNOWN_SETS.get(path.name) if path.parent.name == "beir" else None


def hub_offline() -> bool:
    """HF_HUB_OFFLINE as huggingface_hub read it (at import: its constant is what its downloads obey)."""
    import huggingface_hub.constants  # lazy: huggingface_hub is only needed when the Hub is

    return bool(huggingface_hub.constants.HF_HUB_OFFLINE)


def _snapshots(
    hub_set: HubBeirSet, *, local_only: bool, endpoint: Optional[str], cache_dir: Optional[Path]
) -> tuple[Path, Path]:
    """The two repos' snapshots in the Hub cache, downloaded first unless ``local_only`` (then absent raises)."""
    from huggingface_hub import snapshot_download  # lazy: see hub_offline

    cache = str(cache_dir) if cache_dir else None
    paths = [
        snapshot_download(
            repo_id,
            repo_type="dataset",
            revision=revision,
            allow_patterns=patterns,
            local_files_only=local_only,
            endpoint=endpoint,
            cache_dir=cache,
        )
        for repo_id, revision, patterns in (
            (hub_set.repo_id, hub_set.revision, hub_set.main_patterns()),
            (hub_set.qrels_repo_id, hub_set.qrels_revision, hub_set.qrels_patterns()),
        )
    ]
    main, qrels = paths
    return Path(main), Path(qrels)


def _cached(hub_set: HubBeirSet, cache_dir: Optional[Path]) -> Optional[tuple[Path, Path]]:
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        main, qrels = _snapshots(hub_set, local_only=True, endpoint=None, cache_dir=cache_dir)
    except (LocalEntryNotFoundError, OSError, ValueError):
        return None
    # A snapshot folder exists once anything of the repo was fetched; the files must be there too.
    names = {p.name for p in main.iterdir()} | {p.name for p in qrels.iterdir()}
    texts = all(name in names or f"{name}.gz" in names for name in (CORPUS_FILE, QUERIES_FILE))
    return (main, qrels) if texts and set(hub_set.qrels_patterns()) <= names else None


def fill_state(folder: str | Path, cache_dir: Optional[Path] = None) -> Optional[FillState]:
    """Where ``folder``'s set would come from (None: not a fillable folder). Writes and downloads nothing."""
    hub_set = public_beir_set(folder)
    if hub_set is None:
        return None
    if is_laid_out(Path(folder).expanduser(), hub_set):
        return FillState.READY
    if _cached(hub_set, cache_dir) is not None:
        return FillState.CACHED
    return FillState.UNAVAILABLE if hub_offline() else FillState.DOWNLOAD


def download_line(folder: str | Path) -> str:
    """One line: what filling ``folder`` downloads, and where it lands."""
    hub_set = public_beir_set(folder)
    if hub_set is None:
        return ""
    return f"{describe_download(hub_set)}, once, into the Hub cache; laid out in {Path(folder).expanduser()}"


def fill_beir_folder(folder: str | Path, *, endpoint: Optional[str] = None, cache_dir: Optional[Path] = None) -> Path:
    """Lay out ``folder`` from the Hub cache, downloading the set first when it is not cached (huggingface_hub
    shows its progress bars). A no-op when the folder is complete. `SourceError` in one line when it cannot."""
    path = Path(folder).expanduser()
    hub_set = public_beir_set(path)
    if hub_set is None:
        known = ", ".join(KNOWN_SETS)
        raise SourceError(f"{path} is not a folder beir/<name> of a BEIR set the Hub publishes ({known})")
    if is_laid_out(path, hub_set):
        return path
    snapshots = _cached(hub_set, cache_dir)
    if snapshots is None:
        if hub_offline():
            raise SourceError(
                f"{path} does not exist and {hub_set.repo_id} is not in the Hub cache, while the Hub is offline "
                "(HF_HUB_OFFLINE): unset it to download it, or point EMBED_FT_SHARED_DATA at a folder holding "
                f"beir/{hub_set.name}"
            )
        try:
            snapshots = _snapshots(hub_set, local_only=False, endpoint=endpoint, cache_dir=cache_dir)
        except Exception as exc:  # network, missing repo or revision: one line naming what failed
            raise SourceError(
                f"downloading {hub_set.repo_id} from the Hugging Face Hub failed ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:200] if str(exc) else 'no detail'}); check the network, or point "
                f"EMBED_FT_SHARED_DATA at a folder holding beir/{hub_set.name}"
            ) from exc
    try:
        return lay_out_beir(snapshots[0], snapshots[1], path, hub_set)
    except HubLayoutError as exc:
        raise SourceError(str(exc)) from exc
