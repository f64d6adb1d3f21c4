"""BEIR datasets: load one, turn the held-out SPECTER testing split into one, mine training triplets from one.

Pure Python, no Dagster. BEIR layout: `corpus.jsonl` ({"_id", "title", "text"}), `queries.jsonl` ({"_id", "text"}),
`qrels/<split>.tsv` (query-id, corpus-id, score; with a header line).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Optional, Union

import numpy as np
import pandas as pd

from .specter import SourceError, atomic_write

if TYPE_CHECKING:  # sentence-transformers (and torch) load only when mining
    from sentence_transformers import SentenceTransformer

QRELS_HEADER = ("query-id", "corpus-id", "score")


class BeirData(NamedTuple):
    corpus: dict[str, dict[str, str]]  # doc id -> {"title", "text"}
    queries: dict[str, str]  # query id -> text (only queries judged in the split)
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: score}


def is_beir_folder(folder: Union[str, Path]) -> bool:
    """A folder in BEIR layout: corpus.jsonl, queries.jsonl and a qrels/ folder."""
    folder = Path(folder).expanduser()
    return (folder / "corpus.jsonl").is_file() and (folder / "queries.jsonl").is_file() and (folder / "qrels").is_dir()


def _require(folder: Path, relative: str) -> Path:
    path = folder / relative
    if not path.is_file():
        present = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())[:20] if folder.is_dir() else []
        raise SourceError(
            f"BEIR folder {str(folder)!r} lacks {relative!r}"
            + (f" (found: {', '.join(present)})" if present else " (the folder is missing or empty)")
        )
    return path


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as exc:
                raise SourceError(f"{path}:{number}: not valid JSON ({exc})") from exc
            if not isinstance(row, dict) or "_id" not in row:
                raise SourceError(f"{path}:{number}: expected an object with an `_id` field")
            rows.append(row)
    return rows


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    qrels: dict[str, dict[str, int]] = {}
    with open(path, encoding="utf-8", newline="") as handle:
        for number, fields in enumerate(csv.reader(handle, delimiter="\t"), start=1):
            if not fields or not "".join(fields).strip():
                continue
            if len(fields) < 3:
                raise SourceError(f"{path}:{number}: expected query-id, corpus-id, score separated by tabs, got {fields}")
            query_id, doc_id, score = fields[0].strip(), fields[1].strip(), fields[-1].strip()
            try:
                value = int(float(score))
            except ValueError:
                if number == 1:  # the header line
                    continue
                raise SourceError(f"{path}:{number}: score {score!r} is not a number") from None
            qrels.setdefault(query_id, {})[doc_id] = value
    return qrels


def load_beir(folder: Union[str, Path], split: str = "test") -> BeirData:
    """Corpus, the split's judged queries and its qrels; errors name the folder, the file and the counts."""
    folder = Path(folder).expanduser()
    corpus_path = _require(folder, "corpus.jsonl")
    queries_path = _require(folder, "queries.jsonl")
    qrels_path = _require(folder, f"qrels/{split}.tsv")
    corpus = {
        str(row["_id"]): {"title": str(row.get("title") or ""), "text": str(row.get("text") or "")}
        for row in _read_jsonl(corpus_path)
    }
    all_queries = {str(row["_id"]): str(row.get("text") or "") for row in _read_jsonl(queries_path)}
    qrels = read_qrels(qrels_path)
    if not qrels:
        raise SourceError(f"{qrels_path} holds no judgements")
    judged_docs = {doc for docs in qrels.values() for doc in docs}
    unknown_docs = judged_docs - corpus.keys()
    unknown_queries = qrels.keys() - all_queries.keys()
    if unknown_docs or unknown_queries:
        raise SourceError(
            f"{qrels_path} refers to {len(unknown_docs)} of {len(judged_docs)} judged documents missing from "
            f"corpus.jsonl ({len(corpus)} documents) and {len(unknown_queries)} of {len(qrels)} queries missing from "
            f"queries.jsonl; e.g. docs {sorted(unknown_docs)[:3]}, queries {sorted(unknown_queries)[:3]}"
        )
    queries = {qid: all_queries[qid] for qid in qrels}
    return BeirData(corpus, queries, qrels)


def doc_text(doc: dict[str, str]) -> str:
    """The text a model sees for a BEIR document: title and body."""
    return f"{doc.get('title', '')} {doc.get('text', '')}".strip()


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
    with open(testing_jsonl, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                query, positive, negatives = row["query"], row["pos_doc"], list(row["neg_doc"])
            except (ValueError, KeyError, TypeError) as exc:
                raise SourceError(f"{testing_jsonl}:{number}: not a NeMo row {{query, pos_doc, neg_doc}} ({exc})") from exc
            rows += 1
            query_id = _text_id("q", query)
            queries.setdefault(query_id, query)
            positive_id = _text_id("d", positive)
            corpus.setdefault(positive_id, positive)
            qrels.setdefault(query_id, set()).add(positive_id)
            for negative in negatives:
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
    atomic_write(out_dir / "corpus.jsonl", lambda h: h.write(corpus_bytes))
    atomic_write(out_dir / "queries.jsonl", lambda h: h.write(queries_bytes))
    atomic_write(out_dir / "qrels" / "test.tsv", lambda h: h.write(buffer.getvalue().encode("utf-8")))
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
    doc_texts = [doc_text(data.corpus[d]) for d in doc_ids]
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
