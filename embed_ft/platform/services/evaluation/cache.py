"""The on-disk embedding cache: a whole text set's vectors, checked against the endpoint's current answers."""

from __future__ import annotations

import hashlib
import io
import json
import logging
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from embed_ft.formats.files import atomic_write_bytes

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

