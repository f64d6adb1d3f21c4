"""BEIR sets as the Hugging Face Hub serves them, and how a downloaded copy becomes a BEIR folder (stdlib only).

BEIR publishes each set as two dataset repos: ``BeIR/<name>`` holds ``corpus.jsonl.gz`` and ``queries.jsonl.gz``
(plus a README and a loading script), ``BeIR/<name>-qrels`` holds ``<split>.tsv`` per split (``train.tsv``,
``test.tsv``, ...). `lay_out_beir` turns the two downloaded snapshots into the folder the rest of embed-ft reads
(``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``). The download itself is the caller's (the data layer
for a preset's data, the local evaluator for a task's set), through ``huggingface_hub``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .beir import CORPUS_FILE, QUERIES_FILE, qrels_file


class HubLayoutError(Exception):
    """A downloaded snapshot lacks a file the BEIR layout needs."""


@dataclass(frozen=True)
class HubBeirSet:
    """Where one BEIR set lives on the Hub, and about how much a download of it is."""

    name: str
    revision: Optional[str] = None  # commit of BeIR/<name>; None: the default branch
    qrels_revision: Optional[str] = None  # commit of BeIR/<name>-qrels
    splits: tuple[str, ...] = ("test",)
    download_bytes: int = 0  # the files fetched, as the Hub lists them (0: unknown)

    @property
    def repo_id(self) -> str:
        return f"BeIR/{self.name}"

    @property
    def qrels_repo_id(self) -> str:
        return f"BeIR/{self.name}-qrels"

    def main_patterns(self) -> list[str]:
        return [f"{CORPUS_FILE}.gz", f"{QUERIES_FILE}.gz", CORPUS_FILE, QUERIES_FILE]

    def qrels_patterns(self) -> list[str]:
        return [f"{split}.tsv" for split in self.splits]


# SciFact as the Hub serves it: BeIR/scifact at 984eed8 (corpus.jsonl.gz 2.76 MB, queries.jsonl.gz 49.3 kB) and
# BeIR/scifact-qrels (test.tsv 5.39 kB, train.tsv 14.5 kB). The corpus is pinned: later revisions of the repo may
# carry Parquet conversions instead of the JSONL files.
SCIFACT = HubBeirSet(
    name="scifact",
    revision="984eed826375f18d27936c4a32bf0f8491e3f414",
    splits=("train", "test"),
    download_bytes=2_760_000 + 49_300 + 5_390 + 14_500,
)
KNOWN_SETS = {SCIFACT.name: SCIFACT}


def hub_beir_set(name: str, split: Optional[str] = None) -> HubBeirSet:
    """The set called ``name``: a known one (pinned, every split), else ``BeIR/<name>`` at its default branch."""
    known = KNOWN_SETS.get(name)
    if known is not None and (split is None or split in known.splits):
        return known
    return HubBeirSet(name=name, splits=(split or "test",))


def is_laid_out(folder: Path, hub_set: HubBeirSet) -> bool:
    """Whether ``folder`` holds every file of ``hub_set`` in BEIR layout."""
    names = [CORPUS_FILE, QUERIES_FILE, *(qrels_file(split) for split in hub_set.splits)]
    return all((folder / name).is_file() or (folder / f"{name}.gz").is_file() for name in names)


def lay_out_beir(main_dir: Path, qrels_dir: Path, folder: Path, hub_set: HubBeirSet) -> Path:
    """Write the BEIR folder of ``hub_set`` from its two downloaded snapshots (corpus and queries decompressed).

    The files are written into a temporary sibling first, then moved in one by one, never over a file already
    there: a failed lay-out leaves no half-written file, and a concurrent one no mixed set."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{folder.name}.layout-"))
    try:
        for name in (CORPUS_FILE, QUERIES_FILE):
            plain, packed = Path(main_dir) / name, Path(main_dir) / f"{name}.gz"
            if packed.is_file():
                with gzip.open(packed, "rb") as source, open(staging / name, "wb") as written:
                    shutil.copyfileobj(source, written, 1 << 20)
            elif plain.is_file():
                shutil.copyfile(plain, staging / name)
            else:
                raise HubLayoutError(f"the Hub dataset {hub_set.repo_id} has no {name}(.gz)")
        (staging / "qrels").mkdir()
        for split in hub_set.splits:
            source_qrels = Path(qrels_dir) / f"{split}.tsv"
            if not source_qrels.is_file():
                raise HubLayoutError(f"the Hub dataset {hub_set.qrels_repo_id} has no {split}.tsv")
            shutil.copyfile(source_qrels, staging / qrels_file(split))
        for rel in (CORPUS_FILE, QUERIES_FILE, *(qrels_file(split) for split in hub_set.splits)):
            target = folder / rel
            if not target.exists() and not Path(f"{target}.gz").exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def describe_download(hub_set: HubBeirSet) -> str:
    """What a download of ``hub_set`` fetches, in words: repos, files and size."""
    size = f", about {hub_set.download_bytes / 1e6:.1f} MB" if hub_set.download_bytes else ""
    qrels = ", ".join(f"{split}.tsv" for split in hub_set.splits)
    return (
        f"{hub_set.repo_id} (corpus.jsonl.gz, queries.jsonl.gz) and {hub_set.qrels_repo_id} ({qrels}) "
        f"from the Hugging Face Hub{size}"
    )
