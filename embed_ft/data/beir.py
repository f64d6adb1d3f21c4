"""BEIR datasets: load one, turn the held-out SPECTER testing split into one, mine training triplets from one.

Pure Python, no Dagster. The BEIR layout and its parsing are `embed_ft.formats.beir`; this module adds what
training needs of a set (every judged document and query present) and the conversions.
"""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Optional, Union

import numpy as np
import pandas as pd

from ..formats.beir import (
    QRELS_HEADER,
    BeirFiles,
    BeirFilesMissing,
    BeirFormatError,
    document_text,
    parse_qrels,
    qrels_file,
    read_beir_folder,
)
from ..formats.files import atomic_write_bytes
from ..formats.nemo_jsonl import iter_lines
from .errors import SourceError

if TYPE_CHECKING:  # sentence-transformers (and torch) load only when mining
    from sentence_transformers import SentenceTransformer


def _missing_files_error(error: BeirFilesMissing) -> SourceError:
    folder = error.folder
    present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())[:20] if folder.is_dir() else []
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
            raise SourceError(f"{testing_jsonl}:{line.number}: not a NeMo row {{query, pos_doc, neg_doc}} ({line.problem})")
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


def beir_train_triplets(
    folder: Union[str, Path],
    model: Union["SentenceTransformer", str, Path],
    num_negatives: int = 1,
    split: str = "train",
    batch_size: int = 64,
    max_seq_length: Optional[int] = None,
    max_queries: Optional[int] = None,
) -> pd.DataFrame:
    """Training triplets from a BEIR split: one row per (query, relevant doc) with mined hard negatives.

    positive = the judged document's "title text"; negatives = the `num_negatives` documents the model ranks
    highest for the query (exact cosine over the whole corpus) that are not judged relevant (score > 0) and whose
    text differs from every relevant document's. Returns DataFrame(query, positive, negatives).
    """
    if num_negatives < 1:
        raise ValueError(f"num_negatives must be >= 1, got {num_negatives}")
    data = load_beir(folder, split=split)
    query_ids = [qid for qid, docs in data.qrels.items() if any(score > 0 for score in docs.values())]
    if max_queries is not None:
        query_ids = query_ids[:max_queries]
    if not query_ids:
        raise SourceError(f"BEIR folder {str(folder)!r} split {split!r} has no query with a relevant document")
    doc_ids = list(data.corpus)
    if len(doc_ids) < 2:
        raise SourceError(f"BEIR folder {str(folder)!r}: the corpus needs at least 2 documents, has {len(doc_ids)}")
    doc_texts = [document_text(*data.corpus[d]) for d in doc_ids]
    position = {doc_id: i for i, doc_id in enumerate(doc_ids)}

    encoder = _load_model(model)
    if max_seq_length is not None:
        encoder.max_seq_length = max_seq_length
    doc_emb = encoder.encode(doc_texts, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True)
    query_emb = encoder.encode(
        [data.queries[q] for q in query_ids], batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True
    )

    rows: list[tuple[str, str, list[str]]] = []
    block = 256  # queries scored at once: bounds the score matrix to block x corpus floats
    for start in range(0, len(query_ids), block):
        scores = query_emb[start : start + block] @ doc_emb.T
        for offset, qid in enumerate(query_ids[start : start + block]):
            relevant = [d for d, s in data.qrels[qid].items() if s > 0]
            relevant_texts = {doc_texts[position[d]] for d in relevant}
            excluded = {position[d] for d in relevant}
            # Enough candidates to survive the exclusions; exact top-k by argpartition then sort.
            k = min(len(doc_ids), num_negatives + len(excluded) + 8)
            row_scores = scores[offset]
            top = np.argpartition(-row_scores, k - 1)[:k] if k < len(doc_ids) else np.arange(len(doc_ids))
            ranked = top[np.argsort(-row_scores[top], kind="stable")]
            negatives = [
                doc_texts[i] for i in ranked if i not in excluded and doc_texts[i] not in relevant_texts
            ][:num_negatives]
            if len(negatives) < num_negatives:  # rare: many duplicates of the relevant text; scan the full ranking
                ranked = np.argsort(-row_scores, kind="stable")
                negatives = [
                    doc_texts[i] for i in ranked if i not in excluded and doc_texts[i] not in relevant_texts
                ][:num_negatives]
            if not negatives:
                continue
            for doc_id in relevant:
                rows.append((data.queries[qid], doc_texts[position[doc_id]], negatives))
    return pd.DataFrame(rows, columns=["query", "positive", "negatives"])


def _load_model(model: Union["SentenceTransformer", str, Path]) -> "SentenceTransformer":
    from sentence_transformers import SentenceTransformer

    if isinstance(model, SentenceTransformer):
        return model
    return SentenceTransformer(str(model))
