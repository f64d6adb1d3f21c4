"""The on-disk embedding cache: a whole text set's vectors (memory-mapped .npy), checked against the endpoint's
current answers."""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embed_ft.formats.files import atomic_write, atomic_write_text

log = logging.getLogger("embed_ft.platform.evaluation")

# Bump when the text given to the embedder for a document changes: it is part of every cache key.
DOC_FORMAT = "beir-title-sep-text-strip/v1"


# Fixed texts whose embeddings identify what an endpoint serves (a changed model, prompt or max_seq_length
# changes them). The long one is past 512 tokens so that a truncation change shows too.
PROBE_TEXTS = (
    "What is the effect of aspirin on cardiovascular risk?",
    "Protein folding is determined by the amino acid sequence.",
    "a",
    " ".join(f"word{i} evidence cohort trial outcome" for i in range(160)),
)


def ids_digest(ids: Sequence[str]) -> str:
    """sha256 of the ids in order: what a cache file must have been written for."""
    return hashlib.sha256("\0".join(ids).encode("utf-8")).hexdigest()


class EmbeddingCache:
    """Embeddings of a whole text set on disk, keyed by (embedder identity, input type, texts fingerprint).

    Two files per entry: ``<key>.npy`` (float32 rows in the text set's order, read back memory-mapped so a large
    corpus need not fit in RAM: search reads it chunk by chunk) and ``<key>.json`` (row count, dimension, the ids'
    digest, and the embedder's vectors for ``PROBE_TEXTS`` when it was written). A hit requires the probes to match
    the embedder's current answers, so a model replaced behind the same URL and name (a retrained deployment,
    another max_seq_length) misses instead of serving stale vectors. The metadata is written last: an entry
    without it (an interrupted write) is a miss.
    """

    PROBE_TOLERANCE = 1e-4

    def __init__(self, root: Path):
        self.root = Path(root)

    def key(self, identity: dict[str, Any], input_type: str, texts_fingerprint: str) -> str:
        material = json.dumps(
            {"embedder": identity, "input_type": input_type, "texts": texts_fingerprint, "doc_format": DOC_FORMAT},
            sort_keys=True,
        )
        return hashlib.sha256(material.encode()).hexdigest()[:40]

    def path(self, key: str) -> Path:
        return self.root / f"{key}.npy"

    def meta_path(self, key: str) -> Path:
        return self.root / f"{key}.json"

    def load(self, key: str, ids: Sequence[str], probe: np.ndarray) -> np.ndarray | None:
        """The cached rows as a read-only memory map, or None on a miss."""
        path, meta_path = self.path(key), self.meta_path(key)
        if not (path.is_file() and meta_path.is_file()):
            return None
        try:
            meta = json.loads(meta_path.read_text())
            cached_probe = np.asarray(meta["probe"], dtype=np.float32)
            if cached_probe.shape != probe.shape or np.abs(cached_probe - probe).max() > self.PROBE_TOLERANCE:
                log.info("embedding cache %s: the endpoint's probe vectors changed; re-embedding", path.name)
                return None
            if meta["rows"] != len(ids) or meta["ids_sha256"] != ids_digest(ids):
                return None
            embeddings: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
            if embeddings.dtype != np.float32 or embeddings.shape != (meta["rows"], meta["dim"]):
                return None
            return embeddings
        except Exception as exc:  # a damaged cache file is only a miss
            log.warning("ignoring unreadable embedding cache file %s: %s", path, exc)
            return None

    def save(self, key: str, ids: Sequence[str], embeddings: np.ndarray, probe: np.ndarray) -> None:
        rows = np.asarray(embeddings, dtype=np.float32)
        self.meta_path(key).unlink(missing_ok=True)  # the old entry stops counting before its array is replaced
        atomic_write(self.path(key), lambda handle: np.save(handle, rows, allow_pickle=False))
        meta = {
            "rows": int(rows.shape[0]),
            "dim": int(rows.shape[1]),
            "ids_sha256": ids_digest(ids),
            "probe": probe.astype(np.float32).tolist(),
        }
        atomic_write_text(self.meta_path(key), json.dumps(meta))
