"""BEIR retrieval evaluation: load a BEIR set, embed it through an embeddings endpoint, exact top-k, trec_eval metrics.

No FastAPI here: ``routers/evaluator.py`` runs this in its worker thread, and the benchmark calls it directly.

Fidelity with BEIR (``EvaluateRetrieval`` + ``DenseRetrievalExactSearch`` + ``models.SentenceBERT``, beir 2.2.0):
- a document is embedded as ``(title + " " + text).strip()``; queries are those of the qrels, in qrels order;
- the corpus is put in BEIR's order (longest ``title + text`` first) and every text list is batched the way
  ``SentenceTransformer.encode`` batches it (``np.argsort`` of negative character lengths), so an endpoint that
  runs sentence-transformers sees exactly the batches BEIR would encode, and embeddings come out bit-identical;
- cosine similarity and ``torch.topk`` over ``top_k + 1`` candidates in the same corpus order, skipping a
  document whose id equals the query id;
- metrics from ``pytrec_eval.RelevanceEvaluator``, averaged over the queries it scores (BEIR does the same,
  then rounds to 5 decimals; we do not round).
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import heapq
import io
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence
from urllib.parse import urlsplit

import numpy as np
import pytrec_eval
import requests
import torch
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .paths import InvalidPathError, ensure_within, validate_name, validate_repo_path
from .store import atomic_write_bytes

log = logging.getLogger("embed_ft.platform.evaluation")

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
DEFAULT_SPLIT = "test"
BEIR_FILES = (CORPUS_FILE, QUERIES_FILE)
# Bump when the text given to the embedder for a document changes: it is part of every cache key.
DOC_FORMAT = "beir-title-sep-text-strip/v1"
DEFAULT_BATCH_SIZE = 64
# BEIR's DenseRetrievalExactSearch default: the corpus is scored in chunks of this many documents.
CORPUS_CHUNK_SIZE = 50_000
# Upper bound on one query-by-document score block (floats), so very large query sets are scored in slices.
MAX_SCORE_BLOCK = 64_000_000

# Fixed texts whose embeddings identify what an endpoint serves (a changed model, prompt or max_seq_length
# changes them). The long one is past 512 tokens so that a truncation change shows too.
PROBE_TEXTS = (
    "What is the effect of aspirin on cardiovascular risk?",
    "Protein folding is determined by the amino acid sequence.",
    "a",
    " ".join(f"word{i} evidence cohort trial outcome" for i in range(160)),
)


class EvaluationError(Exception):
    """A problem the user can fix (dataset, endpoint, config); the message is shown as the job's detail."""


class DatasetNotFound(EvaluationError):
    """The BEIR dataset or one of its files is missing."""


class EmbeddingEndpointError(EvaluationError):
    """The embeddings endpoint failed or answered something unusable."""


class EvaluationCancelled(Exception):
    """Raised between batches when the caller asked to stop."""


ProgressFn = Callable[[float, str], None]
StopFn = Callable[[], bool]


# --------------------------------------------------------------------------------------------------- metrics

_CUTOFF_METRIC = re.compile(r"(recall|ndcg_cut|map_cut|P)_([1-9][0-9]{0,4})")
_PLAIN_METRICS = {"map", "recip_rank", "ndcg"}


def parse_metric(name: str) -> tuple[str, int | None]:
    """``"recall_5"`` -> ``("recall", 5)``; ``"map"`` -> ``("map", None)``. Raises ValueError for unknown names."""
    if not isinstance(name, str):
        raise ValueError(f"metric name must be a string, got {name!r}")
    if name in _PLAIN_METRICS:
        return name, None
    match = _CUTOFF_METRIC.fullmatch(name)
    if not match:
        raise ValueError(
            f"unknown retriever metric {name!r}; supported: recall_K, ndcg_cut_K, map_cut_K, P_K "
            f"(K a positive integer), {', '.join(sorted(_PLAIN_METRICS))}"
        )
    return match.group(1), int(match.group(2))


def metric_depth(metric_names: Iterable[str]) -> int:
    """The largest cutoff among the metrics (0 when none has one)."""
    return max((k for _, k in map(parse_metric, metric_names) if k is not None), default=0)


def pytrec_measures(metric_names: Iterable[str]) -> set[str]:
    """pytrec_eval measure strings, one per measure with all its cutoffs (``"ndcg_cut.5,10"``).

    One string per measure, because pytrec_eval keeps only the last parameter list given for a measure.
    """
    cutoffs: dict[str, set[int]] = {}
    plain: set[str] = set()
    for name in metric_names:
        measure, k = parse_metric(name)
        if k is None:
            plain.add(measure)
        else:
            cutoffs.setdefault(measure, set()).add(k)
    return plain | {f"{m}." + ",".join(str(k) for k in sorted(ks)) for m, ks in cutoffs.items()}


def compute_metrics(
    qrels: dict[str, dict[str, int]], run: dict[str, dict[str, float]], metric_names: Sequence[str]
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """trec_eval metrics (mean over the queries pytrec_eval scores, as BEIR averages) and the per-query values."""
    metric_names = list(dict.fromkeys(metric_names))
    evaluator = pytrec_eval.RelevanceEvaluator(qrels, pytrec_measures(metric_names))
    per_query = evaluator.evaluate(run)
    if not per_query:
        raise EvaluationError("no query of the qrels has any retrieved document; nothing to score")
    means = {name: float(sum(scores[name] for scores in per_query.values()) / len(per_query)) for name in metric_names}
    return means, per_query


# --------------------------------------------------------------------------------------------------- datasets


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


def document_text(title: Any, text: Any, sep: str = " ") -> str:
    """BEIR's ``(title + sep + text).strip()``; a missing title or text counts as empty."""
    return ((title or "") + sep + (text or "")).strip()


def _iter_jsonl(data: bytes, file_label: str) -> Iterable[tuple[int, dict]]:
    for line_no, raw in enumerate(data.decode("utf-8-sig").splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise EvaluationError(f"{file_label} line {line_no}: not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise EvaluationError(f"{file_label} line {line_no}: expected a JSON object, got {type(row).__name__}")
        if row.get("_id") is None:
            raise EvaluationError(f"{file_label} line {line_no}: missing '_id'")
        yield line_no, row


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
    qrels_label: str = f"qrels/{DEFAULT_SPLIT}.tsv",
) -> BeirDataset:
    """Parse the three BEIR files. Errors name the file and line."""
    # A dict as in BEIR's loader: a repeated _id keeps its first position and its last content.
    corpus: dict[str, str] = {}
    for _, row in _iter_jsonl(corpus_bytes, CORPUS_FILE):
        title, text = row.get("title"), row.get("text")
        corpus[str(row["_id"])] = (title if isinstance(title, str) else "", text if isinstance(text, str) else "")
    if not corpus:
        raise EvaluationError(f"{CORPUS_FILE} in {location} has no documents")

    queries: dict[str, str] = {}
    for line_no, row in _iter_jsonl(queries_bytes, QUERIES_FILE):
        if not isinstance(row.get("text"), str):
            raise EvaluationError(f"{QUERIES_FILE} line {line_no}: missing 'text' for query {row['_id']!r}")
        queries[str(row["_id"])] = row["text"]

    qrels: dict[str, dict[str, int]] = {}
    lines = qrels_bytes.decode("utf-8-sig").splitlines()
    for line_no, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        cols = raw.split("\t")
        if len(cols) < 3:
            raise EvaluationError(
                f"{qrels_label} line {line_no}: expected 3 tab-separated columns (query-id, corpus-id, score), "
                f"got {len(cols)}"
            )
        try:
            score = int(cols[2])
        except ValueError:
            if line_no == 1:  # the header row ("query-id corpus-id score"), which BEIR skips
                continue
            raise EvaluationError(f"{qrels_label} line {line_no}: score {cols[2]!r} is not an integer") from None
        qrels.setdefault(cols[0], {})[cols[1]] = score
    if not qrels:
        raise EvaluationError(f"{qrels_label} in {location} has no judgements")
    unknown = [qid for qid in qrels if qid not in queries]
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
        corpus_fingerprint=_fingerprint(x for pair in zip(corpus_ids, corpus_texts) for x in pair),
        queries_fingerprint=_fingerprint(x for pair in zip(query_ids, query_texts) for x in pair),
    )


def _beir_files(split: str) -> tuple[str, str, str]:
    return (CORPUS_FILE, QUERIES_FILE, f"qrels/{split}.tsv")


def _read_maybe_gz(folder: Path, name: str) -> bytes | None:
    plain, packed = folder / name, folder / (name + ".gz")
    if plain.is_file():
        return plain.read_bytes()
    if packed.is_file():
        return gzip.decompress(packed.read_bytes())
    return None


def load_beir_folder(folder: Path, *, source: str | None = None, split: str = DEFAULT_SPLIT) -> BeirDataset:
    """Load a BEIR folder (``corpus.jsonl``, ``queries.jsonl`` (``.gz`` accepted), ``qrels/<split>.tsv``)."""
    folder = Path(folder)
    files = _beir_files(split)
    contents = {name: _read_maybe_gz(folder, name) for name in files}
    missing = [name for name, data in contents.items() if data is None]
    if missing:
        raise DatasetNotFound(
            f"BEIR dataset {source or folder} is missing {', '.join(missing)} in folder {folder}; "
            f"fill that folder with {', '.join(files)}"
        )
    return parse_beir(
        contents[files[0]], contents[files[1]], contents[files[2]],
        source=source or str(folder), location=str(folder), qrels_label=files[2],
    )


def _hub_offline() -> bool:
    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        if os.environ.get(var, "").strip().lower() in ("1", "true", "yes", "on"):
            return True
    return False


def fetch_beir_from_hub(name: str, folder: Path, split: str = DEFAULT_SPLIT) -> None:
    """Download ``BeIR/<name>`` (corpus, queries) and ``BeIR/<name>-qrels`` (``<split>.tsv``) into ``folder``.

    The files land in a temporary sibling folder first and are moved in one by one, so a failed download
    leaves no half-written file behind.
    """
    from huggingface_hub import snapshot_download

    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent, prefix=f".{name}.download-"))
    try:
        main_dir = Path(snapshot_download(f"BeIR/{name}", repo_type="dataset",
                                          allow_patterns=["corpus.jsonl*", "queries.jsonl*"]))
        qrels_dir = Path(snapshot_download(f"BeIR/{name}-qrels", repo_type="dataset", allow_patterns=[f"{split}.tsv"]))
        for file_name in BEIR_FILES:
            data = _read_maybe_gz(main_dir, file_name)
            if data is None:
                raise DatasetNotFound(f"the Hub dataset BeIR/{name} has no {file_name}(.gz)")
            (staging / file_name).write_bytes(data)
        qrels_file = qrels_dir / f"{split}.tsv"
        if not qrels_file.is_file():
            raise DatasetNotFound(f"the Hub dataset BeIR/{name}-qrels has no {split}.tsv")
        (staging / "qrels").mkdir()
        shutil.copyfile(qrels_file, staging / "qrels" / f"{split}.tsv")
        for rel in _beir_files(split):
            target = folder / rel
            if not target.exists() and not Path(str(target) + ".gz").exists():
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def beir_folder_for(files_url: str, beir_root: Path) -> tuple[str, Path]:
    """``file://NAME/`` -> (NAME, beir_root/NAME), refusing paths that leave the root."""
    name = files_url[len("file://"):].rstrip("/")  # a leading "/" stays: absolute paths are refused
    try:
        validate_repo_path(name, "BEIR dataset name in files_url")
        folder = ensure_within(beir_root, Path(beir_root).joinpath(*name.split("/")))
    except InvalidPathError as exc:
        raise EvaluationError(f"files_url {files_url!r}: {exc}") from None
    return name, folder


def parse_hf_dataset_url(files_url: str) -> tuple[str, str, str]:
    """``hf://datasets/ns/name[/sub/folder]`` -> (ns, name, sub folder or "")."""
    rest = files_url[len("hf://"):].strip("/")
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
) -> BeirDataset:
    """Load the BEIR set a task names.

    ``file://NAME/`` is the folder ``beir_root/NAME``; when files are missing and the Hub is reachable
    (``allow_download`` None means "unless HF_HUB_OFFLINE is set") it is fetched from ``BeIR/NAME``.
    ``hf://datasets/ns/name`` is resolved through ``hf_folder(ns, name)`` (the Data Store's files on disk).
    """
    validate_files_url(files_url)
    if files_url.startswith("file://"):
        name, folder = beir_folder_for(files_url, beir_root)
        try:
            return load_beir_folder(folder, source=files_url, split=split)
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
            return load_beir_folder(folder, source=files_url, split=split)
    namespace, name, sub = parse_hf_dataset_url(files_url)
    if hf_folder is None:
        raise EvaluationError(f"files_url {files_url!r}: no Data Store is available to resolve hf:// datasets")
    try:
        repo_dir = Path(hf_folder(namespace, name))
    except EvaluationError:
        raise
    except Exception as exc:
        raise DatasetNotFound(f"Data Store dataset {namespace}/{name} (files_url {files_url!r}) was not found: {exc}") from None
    if not repo_dir.is_dir():
        raise DatasetNotFound(f"Data Store dataset {namespace}/{name} (files_url {files_url!r}) has no files")
    folder = ensure_within(repo_dir, repo_dir.joinpath(*sub.split("/"))) if sub else repo_dir
    return load_beir_folder(folder, source=files_url, split=split)


# --------------------------------------------------------------------------------------------------- embedders


def length_sorted_order(texts: Sequence[str]) -> np.ndarray:
    """The order ``SentenceTransformer.encode`` processes texts in (longest first, same ``np.argsort`` call)."""
    return np.argsort([-len(text) for text in texts])


class Embedder:
    """Turns texts into float32 vectors, batch by batch. Subclasses implement ``embed_batch`` and ``identity``."""

    batch_size: int = DEFAULT_BATCH_SIZE

    def identity(self) -> dict[str, Any]:
        """What distinguishes this embedder in a cache key (never a secret)."""
        raise NotImplementedError

    def embed_batch(self, texts: list[str], input_type: str) -> np.ndarray:
        raise NotImplementedError

    def describe(self) -> str:
        ident = self.identity()
        return " ".join(f"{k}={v}" for k, v in ident.items())

    def embed(
        self,
        texts: Sequence[str],
        input_type: str,
        *,
        on_batch: Callable[[int, int], None] | None = None,
        should_stop: StopFn | None = None,
    ) -> np.ndarray:
        """Embed ``texts`` in length-sorted batches; rows come back in the input order.

        ``on_batch(done, total)`` after each batch; ``should_stop()`` is checked before each batch.
        """
        total = len(texts)
        if total == 0:
            raise EvaluationError(f"nothing to embed ({input_type} texts list is empty)")
        order = length_sorted_order(texts)
        out: np.ndarray | None = None
        done = 0
        for start in range(0, total, self.batch_size):
            if should_stop is not None and should_stop():
                raise EvaluationCancelled()
            idx = order[start:start + self.batch_size]
            batch = [texts[i] for i in idx]
            vectors = self._checked(self.embed_batch(batch, input_type), len(batch), out)
            if out is None:
                out = np.empty((total, vectors.shape[1]), dtype=np.float32)
            out[idx] = vectors
            done += len(batch)
            if on_batch is not None:
                on_batch(done, total)
        assert out is not None
        return out

    def _checked(self, vectors: Any, expected_rows: int, previous: np.ndarray | None) -> np.ndarray:
        vectors = np.asarray(vectors, dtype=np.float32)
        where = self.describe()
        if vectors.ndim != 2 or vectors.shape[0] != expected_rows:
            raise EmbeddingEndpointError(
                f"embeddings from {where}: expected {expected_rows} vectors, got an array of shape {vectors.shape}"
            )
        if vectors.shape[1] == 0:
            raise EmbeddingEndpointError(f"embeddings from {where} have 0 dimensions")
        if previous is not None and previous.shape[1] != vectors.shape[1]:
            raise EmbeddingEndpointError(
                f"embeddings from {where} changed dimension from {previous.shape[1]} to {vectors.shape[1]} between batches"
            )
        if not np.isfinite(vectors).all():
            bad = int((~np.isfinite(vectors)).any(axis=1).sum())
            raise EmbeddingEndpointError(f"embeddings from {where}: {bad} of {expected_rows} vectors contain NaN or infinity")
        return vectors


class CallableEmbedder(Embedder):
    """An embedder over a Python function ``fn(texts, input_type) -> array`` (in-process models, tests)."""

    def __init__(self, fn: Callable[[list[str], str], Any], identity: dict[str, Any], batch_size: int = DEFAULT_BATCH_SIZE):
        self._fn = fn
        self._identity = dict(identity)
        self.batch_size = int(batch_size)

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def embed_batch(self, texts: list[str], input_type: str) -> np.ndarray:
        return self._fn(texts, input_type)


class EndpointEmbedder(Embedder):
    """Client of an OpenAI/NIM-compatible ``POST .../v1/embeddings`` URL.

    ``format="nim"`` sends ``input_type`` (query/passage) and ``truncate: END``; ``format="openai"`` sends only
    the OpenAI fields. Vectors are asked for as base64 float32 (falls back to float lists if refused).
    Connection errors raised before a request was sent are retried; nothing else is.
    """

    CONNECT_TIMEOUT_S = 10.0
    READ_TIMEOUT_S = 600.0

    def __init__(
        self,
        url: str,
        model_id: str,
        api_key: str | None = "",
        format: str = "nim",
        *,
        batch_size: int = DEFAULT_BATCH_SIZE,
        session: requests.Session | None = None,
        timeout: tuple[float, float] | None = None,
    ):
        parts = urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise EvaluationError(f"api_endpoint.url {url!r} is not an http(s) URL")
        if not model_id:
            raise EvaluationError("api_endpoint.model_id is empty")
        fmt = (format or "nim").lower()
        if fmt not in ("nim", "openai"):
            raise EvaluationError(f"api_endpoint.format {format!r} is not supported; use 'nim' or 'openai'")
        self.url = url
        self.model_id = model_id
        self.format = fmt
        self.batch_size = int(batch_size)
        self.timeout = timeout or (self.CONNECT_TIMEOUT_S, self.READ_TIMEOUT_S)
        self._encoding = "base64"
        self._session = session or self._new_session()
        self._headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if api_key:
            self._headers["Authorization"] = f"Bearer {api_key}"
        self.requests_sent = 0

    @staticmethod
    def _new_session() -> requests.Session:
        # Retries only for connection errors (the request never reached the server); reads and statuses are final.
        retry = Retry(total=3, connect=3, read=0, status=0, other=0, redirect=0, allowed_methods=None,
                      backoff_factor=0.5, raise_on_status=False)
        session = requests.Session()
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def close(self) -> None:
        self._session.close()

    def identity(self) -> dict[str, Any]:
        return {"kind": "endpoint", "url": self.url, "model_id": self.model_id, "format": self.format}

    def describe(self) -> str:
        return f"{self.url} (model {self.model_id!r})"

    def _body(self, texts: list[str], input_type: str) -> dict[str, Any]:
        body: dict[str, Any] = {"input": texts, "model": self.model_id, "encoding_format": self._encoding}
        if self.format == "nim":
            body["input_type"] = input_type
            body["truncate"] = "END"
        return body

    def _post(self, texts: list[str], input_type: str) -> requests.Response:
        try:
            self.requests_sent += 1
            return self._session.post(self.url, json=self._body(texts, input_type), headers=self._headers,
                                      timeout=self.timeout)
        except requests.RequestException as exc:
            raise EmbeddingEndpointError(f"embeddings request to {self.describe()} failed: {type(exc).__name__}: {exc}") from None

    def embed_batch(self, texts: list[str], input_type: str) -> np.ndarray:
        response = self._post(texts, input_type)
        if response.status_code in (400, 422) and self._encoding == "base64":
            # Some OpenAI-compatible servers refuse base64; ask for float lists from now on.
            retry = self._post_with_encoding("float", texts, input_type)
            if retry.ok:
                response = retry
        if not response.ok:
            detail = response.text[:500]
            try:
                detail = str(response.json().get("detail") or response.json().get("error") or detail)[:500]
            except ValueError:
                pass
            hint = " (check api_endpoint.api_key)" if response.status_code in (401, 403) else ""
            raise EmbeddingEndpointError(
                f"embeddings endpoint {self.describe()} answered HTTP {response.status_code}{hint}: {detail}"
            )
        try:
            payload = response.json()
            rows = sorted(payload["data"], key=lambda row: row.get("index", 0))
            vectors = [self._decode(row["embedding"]) for row in rows]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise EmbeddingEndpointError(
                f"embeddings endpoint {self.describe()} answered an unreadable body ({type(exc).__name__}: {exc}); "
                "expected {'data': [{'index', 'embedding'}]}"
            ) from None
        if len(vectors) != len(texts):
            raise EmbeddingEndpointError(
                f"embeddings endpoint {self.describe()} returned {len(vectors)} vectors for {len(texts)} inputs"
            )
        dims = {v.shape[0] for v in vectors}
        if len(dims) != 1:
            raise EmbeddingEndpointError(
                f"embeddings endpoint {self.describe()} returned vectors of different dimensions {sorted(dims)} in one batch"
            )
        return np.stack(vectors)

    def _post_with_encoding(self, encoding: str, texts: list[str], input_type: str) -> requests.Response:
        previous, self._encoding = self._encoding, encoding
        response = self._post(texts, input_type)
        if not response.ok:
            self._encoding = previous
        return response

    @staticmethod
    def _decode(embedding: Any) -> np.ndarray:
        if isinstance(embedding, str):
            raw = base64.b64decode(embedding)
            if len(raw) % 4:
                raise ValueError(f"base64 embedding of {len(raw)} bytes is not float32")
            return np.frombuffer(raw, dtype="<f4").astype(np.float32)
        if isinstance(embedding, list):
            return np.asarray(embedding, dtype=np.float32)
        raise TypeError(f"embedding is a {type(embedding).__name__}, expected a list of floats or a base64 string")


# --------------------------------------------------------------------------------------------------- cache


class EmbeddingCache:
    """Embeddings of a whole text set on disk, keyed by (embedder identity, input type, texts fingerprint).

    The file also holds the embedder's vectors for ``PROBE_TEXTS`` when it was written; a hit requires the
    probes to match the embedder's current answers, so a model replaced behind the same URL and name (a
    retrained deployment, another max_seq_length) misses instead of serving stale vectors.
    """

    PROBE_TOLERANCE = 1e-4

    def __init__(self, root: Path):
        self.root = Path(root)

    def key(self, identity: dict[str, Any], input_type: str, texts_fingerprint: str) -> str:
        material = json.dumps({"embedder": identity, "input_type": input_type, "texts": texts_fingerprint,
                               "doc_format": DOC_FORMAT}, sort_keys=True)
        return hashlib.sha256(material.encode()).hexdigest()[:40]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npz"

    def load(self, key: str, ids: Sequence[str], probe: np.ndarray) -> np.ndarray | None:
        path = self.path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as data:
                cached_ids, embeddings, cached_probe = data["ids"], data["embeddings"], data["probe"]
                if cached_probe.shape != probe.shape or np.abs(cached_probe - probe).max() > self.PROBE_TOLERANCE:
                    log.info("embedding cache %s: the endpoint's probe vectors changed; re-embedding", path.name)
                    return None
                if len(cached_ids) != len(ids) or not all(a == b for a, b in zip(cached_ids.tolist(), ids)):
                    return None
                return np.asarray(embeddings, dtype=np.float32)
        except Exception as exc:  # a damaged cache file is only a miss
            log.warning("ignoring unreadable embedding cache file %s: %s", path, exc)
            return None

    def save(self, key: str, ids: Sequence[str], embeddings: np.ndarray, probe: np.ndarray) -> None:
        buffer = io.BytesIO()
        np.savez(buffer, ids=np.asarray(list(ids), dtype=np.str_), embeddings=embeddings.astype(np.float32),
                 probe=probe.astype(np.float32))
        atomic_write_bytes(self.path(key), buffer.getvalue())


# --------------------------------------------------------------------------------------------------- search


def exact_search(
    query_embeddings: np.ndarray,
    query_ids: Sequence[str],
    corpus_embeddings: np.ndarray,
    corpus_ids: Sequence[str],
    top_k: int,
    *,
    corpus_chunk_size: int = CORPUS_CHUNK_SIZE,
    should_stop: StopFn | None = None,
) -> dict[str, dict[str, float]]:
    """Cosine top-k for every query, as BEIR's DenseRetrievalExactSearch computes it (same ops, same order).

    Returns ``{query_id: {doc_id: score}}`` with at most ``top_k`` documents; a document whose id equals the
    query id is never returned.
    """
    if query_embeddings.shape[1] != corpus_embeddings.shape[1]:
        raise EvaluationError(
            f"query embeddings have {query_embeddings.shape[1]} dimensions but document embeddings have "
            f"{corpus_embeddings.shape[1]}; the query and index models must produce vectors of the same size"
        )
    queries = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(query_embeddings)), p=2, dim=1)
    heaps: dict[str, list[tuple[float, str]]] = {qid: [] for qid in query_ids}
    n_docs = len(corpus_ids)
    rows_per_slice = max(1, MAX_SCORE_BLOCK // max(1, min(corpus_chunk_size, n_docs)))
    for start in range(0, n_docs, corpus_chunk_size):
        if should_stop is not None and should_stop():
            raise EvaluationCancelled()
        end = min(start + corpus_chunk_size, n_docs)
        docs = torch.nn.functional.normalize(torch.from_numpy(np.ascontiguousarray(corpus_embeddings[start:end])), p=2, dim=1)
        k = min(top_k + 1, end - start)
        for q_start in range(0, len(query_ids), rows_per_slice):
            scores = torch.mm(queries[q_start:q_start + rows_per_slice], docs.transpose(0, 1))
            scores[torch.isnan(scores)] = -1
            values, indices = torch.topk(scores, k, dim=1, largest=True, sorted=False)
            for row, (vals, idxs) in enumerate(zip(values.tolist(), indices.tolist())):
                qid = query_ids[q_start + row]
                heap = heaps[qid]
                for score, idx in zip(vals, idxs):
                    doc_id = corpus_ids[start + idx]
                    if doc_id == qid:
                        continue
                    _push_top(heap, (score, doc_id), top_k)
    return {qid: {doc_id: score for score, doc_id in heap} for qid, heap in heaps.items()}


def _push_top(heap: list[tuple[float, str]], item: tuple[float, str], top_k: int) -> None:
    if len(heap) < top_k:
        heapq.heappush(heap, item)
    else:
        heapq.heappushpop(heap, item)


# --------------------------------------------------------------------------------------------------- evaluation


@dataclass
class TaskEvaluation:
    metrics: dict[str, float]
    per_query: dict[str, dict[str, float]]
    run: dict[str, dict[str, float]]
    top_k: int
    num_queries: int
    num_docs: int
    corpus_cache_hit: bool
    query_cache_hit: bool
    timings_s: dict[str, float] = field(default_factory=dict)


def _embed_with_cache(
    embedder: Embedder,
    texts: Sequence[str],
    ids: Sequence[str],
    fingerprint: str,
    input_type: str,
    cache: EmbeddingCache | None,
    on_batch: Callable[[int, int], None],
    should_stop: StopFn | None,
) -> tuple[np.ndarray, bool]:
    if cache is None:
        return embedder.embed(texts, input_type, on_batch=on_batch, should_stop=should_stop), False
    # The long probe goes alone so that the short ones are not padded to the maximum length.
    probe = np.concatenate([embedder.embed(list(PROBE_TEXTS[:-1]), input_type),
                            embedder.embed(list(PROBE_TEXTS[-1:]), input_type)])
    key = cache.key(embedder.identity(), input_type, fingerprint)
    cached = cache.load(key, ids, probe)
    if cached is not None:
        on_batch(len(texts), len(texts))
        return cached, True
    vectors = embedder.embed(texts, input_type, on_batch=on_batch, should_stop=should_stop)
    if vectors.shape[1] != probe.shape[1]:
        raise EmbeddingEndpointError(
            f"embeddings from {embedder.describe()} changed dimension from {probe.shape[1]} to {vectors.shape[1]}"
        )
    cache.save(key, ids, vectors, probe)
    return vectors, False


def evaluate_retrieval(
    dataset: BeirDataset,
    query_embedder: Embedder,
    index_embedder: Embedder,
    metric_names: Sequence[str],
    top_k: int,
    *,
    cache: EmbeddingCache | None = None,
    progress: ProgressFn | None = None,
    should_stop: StopFn | None = None,
) -> TaskEvaluation:
    """Embed queries and corpus (cached), exact top-k, pytrec_eval metrics.

    Retrieval depth is ``max(top_k, largest metric cutoff)`` so that a metric at K sees K documents.
    ``progress(fraction, message)`` goes from 0 to 1 (the corpus pass dominates, weighted by text count).
    """
    metric_names = list(dict.fromkeys(metric_names))
    for name in metric_names:
        parse_metric(name)
    depth = max(int(top_k), metric_depth(metric_names))
    report = progress or (lambda fraction, message: None)
    timings: dict[str, float] = {}
    total_texts = dataset.num_queries + dataset.num_docs

    def on_queries(done: int, total: int) -> None:
        report(0.95 * done / total_texts, f"embedded {done}/{total} queries")

    def on_corpus(done: int, total: int) -> None:
        report(0.95 * (dataset.num_queries + done) / total_texts, f"embedded {done}/{total} documents")

    t0 = time.perf_counter()
    query_vectors, query_hit = _embed_with_cache(query_embedder, dataset.query_texts, dataset.query_ids,
                                                 dataset.queries_fingerprint, "query", cache, on_queries, should_stop)
    timings["embed_queries"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    corpus_vectors, corpus_hit = _embed_with_cache(index_embedder, dataset.corpus_texts, dataset.corpus_ids,
                                                   dataset.corpus_fingerprint, "passage", cache, on_corpus, should_stop)
    timings["embed_corpus"] = time.perf_counter() - t0
    report(0.96, f"searching top {depth} of {dataset.num_docs} documents for {dataset.num_queries} queries")
    t0 = time.perf_counter()
    run = exact_search(query_vectors, dataset.query_ids, corpus_vectors, dataset.corpus_ids, depth,
                       should_stop=should_stop)
    timings["search"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    metrics, per_query = compute_metrics(dataset.qrels, run, metric_names)
    timings["metrics"] = time.perf_counter() - t0
    report(1.0, "metrics computed")
    return TaskEvaluation(
        metrics=metrics, per_query=per_query, run=run, top_k=depth, num_queries=dataset.num_queries,
        num_docs=dataset.num_docs, corpus_cache_hit=corpus_hit, query_cache_hit=query_hit, timings_s=timings,
    )


def nemo_results(job_id: str, result_id: str, files_url: str, task_metrics: dict[str, dict[str, float]]) -> dict[str, Any]:
    """The Evaluator's results document: ``tasks.<task>.metrics["retriever.<m>"].scores.<m>.value``."""
    return {
        "job": job_id,
        "id": result_id,
        "files_url": files_url,
        "tasks": {
            task: {
                "metrics": {
                    f"retriever.{name}": {"scores": {name: {"value": value, "stats": {}}}}
                    for name, value in metrics.items()
                }
            }
            for task, metrics in task_metrics.items()
        },
    }
