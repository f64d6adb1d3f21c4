"""BEIR sets: parse the three files, load a folder (or fetch it from the Hub), resolve a task's ``files_url``.

Fidelity with BEIR's loader: a document is ``(title + " " + text).strip()``; queries are those of the qrels, in
qrels order; the corpus is put in BEIR's order (longest ``title + text`` first).
"""

from __future__ import annotations

import hashlib
import logging
import os
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

from embed_ft.formats.beir import (
    CORPUS_FILE,
    DEFAULT_SPLIT,
    QUERIES_FILE,
    BeirFileTooLarge,
    BeirFormatError,
    beir_files,
    document_text,
    parse_beir as parse_beir_files,
    qrels_file,
    read_maybe_gz,
)
from embed_ft.formats.beir_hub import HubLayoutError, hub_beir_set, lay_out_beir

from ...paths import InvalidPathError, ensure_within, validate_name, validate_repo_path
from .errors import DatasetNotFound, EvaluationError

log = logging.getLogger("embed_ft.platform.evaluation")


@dataclass
class BeirDataset:
    """A BEIR set reduced to what retrieval needs: formatted document texts in BEIR order, the split's queries."""

    source: str  # what the user named (files_url)
    location: str  # where the files were read (folder or repo)
    corpus_ids: list[str]
    corpus_texts: list[str]
    query_ids: list[str]
    query_texts: list[str]
    qrels: dict[str, dict[str, int]]
    corpus_fingerprint: str
    queries_fingerprint: str

    @property
    def num_docs(self) -> int:
        return len(self.corpus_ids)

    @property
    def num_queries(self) -> int:
        return len(self.query_ids)


def _fingerprint(items: Iterable[str]) -> str:
    digest = hashlib.sha256()
    for item in items:
        encoded = item.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "little"))
        digest.update(encoded)
    return digest.hexdigest()


def parse_beir(
    corpus_bytes: bytes,
    queries_bytes: bytes,
    qrels_bytes: bytes,
    *,
    source: str,
    location: str,
    qrels_label: str = qrels_file(),
) -> BeirDataset:
    """Parse the three BEIR files (``embed_ft.formats.beir``) into what retrieval needs. Errors name the file and
    line."""
    try:
        files = parse_beir_files(corpus_bytes, queries_bytes, qrels_bytes, qrels_name=qrels_label)
    except BeirFormatError as exc:
        raise EvaluationError(f"{exc.file} line {exc.line}: {exc.problem}") from None
    corpus, queries, qrels = files.corpus, files.queries, files.qrels
    if not corpus:
        raise EvaluationError(f"{CORPUS_FILE} in {location} has no documents")
    if not qrels:
        raise EvaluationError(f"{qrels_label} in {location} has no judgements")
    unknown = files.unknown_queries()
    if unknown:
        raise EvaluationError(
            f"{qrels_label} names {len(unknown)} query id(s) missing from {QUERIES_FILE}: "
            + ", ".join(repr(q) for q in unknown[:5])
            + (" ..." if len(unknown) > 5 else "")
        )

    # BEIR's corpus order: longest title+text first, ties in file order (Python's sort is stable).
    corpus_ids = sorted(corpus, key=lambda cid: len(corpus[cid][0] + corpus[cid][1]), reverse=True)
    corpus_texts = [document_text(*corpus[cid]) for cid in corpus_ids]
    query_ids = list(qrels)
    query_texts = [queries[qid] for qid in query_ids]
    return BeirDataset(
        source=source,
        location=location,
        corpus_ids=corpus_ids,
        corpus_texts=corpus_texts,
        query_ids=query_ids,
        query_texts=query_texts,
        qrels=qrels,
        corpus_fingerprint=_fingerprint(x for pair in zip(corpus_ids, corpus_texts, strict=True) for x in pair),
        queries_fingerprint=_fingerprint(x for pair in zip(query_ids, query_texts, strict=True) for x in pair),
    )


def load_beir_folder(
    folder: Path, *, source: str | None = None, split: str = DEFAULT_SPLIT, max_file_bytes: int | None = None
) -> BeirDataset:
    """Load a BEIR folder (``corpus.jsonl``, ``queries.jsonl`` (``.gz`` accepted), ``qrels/<split>.tsv``); a file
    (decompressed) over ``max_file_bytes`` is an ``EvaluationError`` naming it and the limit."""
    folder = Path(folder)
    files = beir_files(split)
    try:
        read = {name: read_maybe_gz(folder, name, max_file_bytes) for name in files}
    except BeirFileTooLarge as exc:
        raise EvaluationError(f"BEIR dataset {source or folder}: {exc} (max_dataset_file_bytes)") from None
    except (EOFError, OSError, zlib.error) as exc:  # a truncated or corrupt .gz
        raise EvaluationError(f"BEIR dataset {source or folder}: a file cannot be read: {exc}") from None
    missing = [name for name, data in read.items() if data is None]
    contents = {name: data for name, data in read.items() if data is not None}
    if missing:
        raise DatasetNotFound(
            f"BEIR dataset {source or folder} is missing {', '.join(missing)} in folder {folder}; "
            f"fill that folder with {', '.join(files)}"
        )
    return parse_beir(
        contents[files[0]],
        contents[files[1]],
        contents[files[2]],
        source=source or str(folder),
        location=str(folder),
        qrels_label=files[2],
    )


def _hub_offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def fetch_beir_from_hub(name: str, folder: Path, split: str = DEFAULT_SPLIT) -> None:
    """Download ``BeIR/<name>`` (corpus, queries) and ``BeIR/<name>-qrels`` (the split's qrels; every split of a set
    `formats.beir_hub` knows, at its pinned revision) and lay them out in ``folder`` (`lay_out_beir`)."""
    from huggingface_hub import snapshot_download

    hub_set = hub_beir_set(name, split)
    main_dir = Path(
        snapshot_download(
            hub_set.repo_id, repo_type="dataset", revision=hub_set.revision, allow_patterns=hub_set.main_patterns()
        )
    )
    qrels_dir = Path(
        snapshot_download(
            hub_set.qrels_repo_id,
            repo_type="dataset",
            revision=hub_set.qrels_revision,
            allow_patterns=hub_set.qrels_patterns(),
        )
    )
    try:
        lay_out_beir(main_dir, qrels_dir, folder, hub_set)
    except HubLayoutError as exc:
        raise DatasetNotFound(str(exc)) from None


def beir_folder_for(files_url: str, beir_root: Path) -> tuple[str, Path]:
    """``file://NAME/`` -> (NAME, beir_root/NAME), refusing paths that leave the root."""
    name = files_url[len("file://") :].rstrip("/")  # a leading "/" stays: absolute paths are refused
    try:
        validate_repo_path(name, "BEIR dataset name in files_url")
        folder = ensure_within(beir_root, Path(beir_root).joinpath(*name.split("/")))
    except InvalidPathError as exc:
        raise EvaluationError(f"files_url {files_url!r}: {exc}") from None
    return name, folder


def parse_hf_dataset_url(files_url: str) -> tuple[str, str, str]:
    """``hf://datasets/ns/name[/sub/folder]`` -> (ns, name, sub folder or "")."""
    rest = files_url[len("hf://") :].strip("/")
    parts = rest.split("/")
    if len(parts) < 3 or parts[0] != "datasets":
        raise EvaluationError(f"files_url {files_url!r} must look like hf://datasets/<namespace>/<name>")
    try:
        namespace = validate_name(parts[1], "namespace in files_url")
        name = validate_name(parts[2], "dataset name in files_url")
        sub = "/".join(parts[3:])
        if sub:
            validate_repo_path(sub, "folder in files_url")
    except InvalidPathError as exc:
        raise EvaluationError(f"files_url {files_url!r}: {exc}") from None
    return namespace, name, sub


def validate_files_url(files_url: Any) -> str:
    """Check the form of a task's ``dataset.files_url`` (used by the router to answer 422 early)."""
    if not isinstance(files_url, str) or not files_url:
        raise EvaluationError("dataset.files_url must be a non-empty string such as 'file://scifact/'")
    if files_url.startswith("file://"):
        beir_folder_for(files_url, Path("/beir-root-placeholder"))
    elif files_url.startswith("hf://"):
        parse_hf_dataset_url(files_url)
    else:
        raise EvaluationError(
            f"dataset.files_url {files_url!r} is not supported; use file://<name>/ (a BEIR set under the platform's "
            "BEIR root) or hf://datasets/<namespace>/<name> (a Data Store dataset in BEIR layout)"
        )
    return files_url


def load_beir_dataset(
    files_url: str,
    beir_root: Path,
    *,
    hf_folder: Callable[[str, str], Path] | None = None,
    split: str = DEFAULT_SPLIT,
    allow_download: bool | None = None,
    max_file_bytes: int | None = None,
) -> BeirDataset:
    """Load the BEIR set a task names.

    ``file://NAME/`` is the folder ``beir_root/NAME``; when files are missing and the Hub is reachable
    (``allow_download`` None means "unless HF_HUB_OFFLINE is set") it is fetched from ``BeIR/NAME``.
    ``hf://datasets/ns/name`` is resolved through ``hf_folder(ns, name)`` (the Data Store's files on disk).
    ``max_file_bytes`` caps each file's (decompressed) size.
    """
    validate_files_url(files_url)
    if files_url.startswith("file://"):
        name, folder = beir_folder_for(files_url, beir_root)
        try:
            return load_beir_folder(folder, source=files_url, split=split, max_file_bytes=max_file_bytes)
        except DatasetNotFound as missing:
            if allow_download is None:
                allow_download = not _hub_offline()
            if not allow_download or "/" in name:
                raise DatasetNotFound(f"{missing} (offline: the Hub download of BeIR/{name} is disabled)") from None
            log.info("BEIR set %s is not in %s; downloading BeIR/%s from the Hub", name, folder, name)
            try:
                fetch_beir_from_hub(name, folder, split)
            except Exception as exc:  # network, missing repo, ... : the user must fill the folder by hand
                raise DatasetNotFound(
                    f"{missing}; downloading BeIR/{name} and BeIR/{name}-qrels from the Hub failed "
                    f"({type(exc).__name__}: {str(exc)[:300]})"
                ) from None
            return load_beir_folder(folder, source=files_url, split=split, max_file_bytes=max_file_bytes)
    namespace, name, sub = parse_hf_dataset_url(files_url)
    if hf_folder is None:
        raise EvaluationError(f"files_url {files_url!r}: no Data Store is available to resolve hf:// datasets")
    try:
        repo_dir = Path(hf_folder(namespace, name))
    except EvaluationError:
        raise
    except Exception as exc:
        raise DatasetNotFound(
            f"Data Store dataset {namespace}/{name} (files_url {files_url!r}) was not found: {exc}"
        ) from None
    if not repo_dir.is_dir():
        raise DatasetNotFound(f"Data Store dataset {namespace}/{name} (files_url {files_url!r}) has no files")
    folder = ensure_within(repo_dir, repo_dir.joinpath(*sub.split("/"))) if sub else repo_dir
    return load_beir_folder(folder, source=files_url, split=split, max_file_bytes=max_file_bytes)
