"""BEIR datasets: load one, snapshot a split of one, turn the held-out SPECTER testing split into one.

Pure Python, no Dagster. The BEIR layout and its parsing are `embed_ft.formats.beir`; this module adds what
training needs of a set (every judged document and query present) and the conversions. Mining training triplets
from a split is `embed_ft.data.mining`.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from functools import partial
from pathlib import Path
from typing import BinaryIO, Union

from ..formats.beir import (
    QRELS_HEADER,
    BeirFiles,
    BeirFilesMissing,
    BeirFormatError,
    beir_files,
    parse_qrels,
    qrels_file,
    read_beir_folder,
)
from ..formats.files import atomic_write, atomic_write_bytes
from ..formats.nemo_jsonl import iter_lines
from .errors import SourceError


def _missing_files_error(error: BeirFilesMissing) -> SourceError:
    folder = error.folder
    present = (
        sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())[:20]
        if folder.is_dir()
        else []
    )
    return SourceError(
        f"BEIR folder {str(folder)!r} lacks {', '.join(repr(name) for name in error.missing)}"
        + (f" (found: {', '.join(present)})" if present else " (the folder is missing or empty)")
    )


def read_qrels(path: Union[str, Path]) -> dict[str, dict[str, int]]:
    """The judgements of one qrels TSV file (query id -> {doc id: score})."""
    try:
        return parse_qrels(Path(path).read_bytes(), str(path))
    except BeirFormatError as exc:
        raise SourceError(str(exc)) from None


def load_beir(folder: Union[str, Path], split: str = "test") -> BeirFiles:
    """Corpus, the split's judged queries and its qrels, every judged document and query present; errors name the
    folder, the file and the counts."""
    folder = Path(folder).expanduser()
    try:
        data = read_beir_folder(folder, split)
    except BeirFilesMissing as exc:
        raise _missing_files_error(exc) from None
    except BeirFormatError as exc:
        raise SourceError(str(exc)) from None
    qrels_path = folder / qrels_file(split)
    if not data.qrels:
        raise SourceError(f"{qrels_path} holds no judgements")
    unknown_docs, unknown_queries = data.unknown_documents(), data.unknown_queries()
    if unknown_docs or unknown_queries:
        raise SourceError(
            f"{qrels_path} refers to {len(unknown_docs)} of {data.judged_documents()} judged documents missing from "
            f"corpus.jsonl ({len(data.corpus)} documents) and {len(unknown_queries)} of {len(data.qrels)} queries "
            f"missing from queries.jsonl; e.g. docs {unknown_docs[:3]}, queries {sorted(unknown_queries)[:3]}"
        )
    return data._replace(queries={qid: data.queries[qid] for qid in data.qrels})


def _text_id(prefix: str, text: str) -> str:
    # Content-derived ids stay the same whatever the row order or the other rows of the file.
    return f"{prefix}-{hashlib.sha1(text.encode('utf-8')).hexdigest()[:16]}"


def testing_split_to_beir(testing_jsonl: Union[str, Path], out_dir: Union[str, Path]) -> dict[str, int]:
    """Write a NeMo JSONL split as a BEIR dataset: its queries, a corpus of their positives and negatives
    (deduplicated by text), and qrels/test.tsv query -> positive (score 1). Returns the counts."""
    testing_jsonl, out_dir = Path(testing_jsonl), Path(out_dir)
    if not testing_jsonl.is_file():
        raise SourceError(f"testing split {str(testing_jsonl)!r} does not exist")
    queries: dict[str, str] = {}
    corpus: dict[str, str] = {}
    qrels: dict[str, set[str]] = {}
    rows = 0
    for line in iter_lines(testing_jsonl):
        if line.problem:
            raise SourceError(
                f"{testing_jsonl}:{line.number}: not a NeMo row {{query, pos_doc, neg_doc}} ({line.problem})"
            )
        rows += 1
        query, positive = line.row["query"], line.row["pos_doc"]
        query_id = _text_id("q", query)
        queries.setdefault(query_id, query)
        positive_id = _text_id("d", positive)
        corpus.setdefault(positive_id, positive)
        qrels.setdefault(query_id, set()).add(positive_id)
        for negative in line.row.get("neg_doc", []):
            corpus.setdefault(_text_id("d", negative), negative)
    if not rows:
        raise SourceError(f"testing split {str(testing_jsonl)!r} is empty")

    def jsonl(items) -> bytes:
        return "".join(json.dumps(item, ensure_ascii=False) + "\n" for item in items).encode("utf-8")

    corpus_bytes = jsonl({"_id": doc_id, "title": "", "text": text} for doc_id, text in corpus.items())
    queries_bytes = jsonl({"_id": query_id, "text": text} for query_id, text in queries.items())
    buffer = io.StringIO()
    buffer.write("\t".join(QRELS_HEADER) + "\n")
    for query_id, doc_ids in qrels.items():
        for doc_id in sorted(doc_ids):
            buffer.write(f"{query_id}\t{doc_id}\t1\n")
    atomic_write_bytes(out_dir / "corpus.jsonl", corpus_bytes)
    atomic_write_bytes(out_dir / "queries.jsonl", queries_bytes)
    atomic_write_bytes(out_dir / qrels_file("test"), buffer.getvalue().encode("utf-8"))
    return {
        "rows": rows,
        "queries": len(queries),
        "corpus": len(corpus),
        "qrels": sum(len(d) for d in qrels.values()),
    }


# The name starts with "test": keep pytest from collecting it in test modules that import it.
testing_split_to_beir.__test__ = False  # type: ignore[attr-defined]


def snapshot_beir_split(folder: Union[str, Path], out_dir: Union[str, Path], split: str = "train") -> BeirFiles:
    """Copy the split's files (corpus, queries, qrels/<split>.tsv, plain or .gz as found) into ``out_dir`` after
    checking them with `load_beir`; returns what `load_beir` read. Files of other splits are not copied."""
    folder, out_dir = Path(folder).expanduser(), Path(out_dir)
    data = load_beir(folder, split=split)
    for name in beir_files(split):
        for suffix in ("", ".gz"):
            source = folder / f"{name}{suffix}"
            target = out_dir / f"{name}{suffix}"
            if source.is_file():
                atomic_write(target, partial(_copy_into, source))
            elif target.is_file():
                target.unlink()  # a stale copy of the other spelling would shadow or duplicate the new one
    return data


def _copy_into(source: Path, handle: BinaryIO) -> None:
    with open(source, "rb") as src:
        shutil.copyfileobj(src, handle, 1 << 20)


def beir_files_of(folder: Union[str, Path], split: str) -> list[Path]:
    """The split's files present in ``folder`` (plain or .gz): what its content hash is taken over."""
    folder = Path(folder).expanduser()
    return [p for name in beir_files(split) for suffix in ("", ".gz") if (p := folder / f"{name}{suffix}").is_file()]
