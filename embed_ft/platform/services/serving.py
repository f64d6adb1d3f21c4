"""NIM serving: the registry of served models, and embeddings from them (the ``/v1/embeddings`` work).

Models are served under their **unversioned** name ``ns/name`` (``ns/name@cust-...`` -> ``ns/name``), as the
real NIM gateway does. The Deployment service fills the registry when a deployment becomes ready and empties it
when the deployment is deleted; the evaluator embeds through ``embed_texts`` instead of HTTP.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import embedding
from .errors import ConflictError, DomainError, MalformedRequestError, NotFoundError, PayloadTooLargeError
from .model_weights import unversioned
from .runtime_choice import RuntimeChoice


class ModelNotServed(NotFoundError):
    """No ready deployment serves this model name; the message lists the names that are served."""


class EmbeddingAbandoned(DomainError):
    """The client went away while its input was being encoded: the rest of it is not encoded."""


# Texts encoded between two checks of ``should_stop`` (a client that went away stops its encode there).
ENCODE_BATCH = 8


def check_embedding_input(texts: list[str], max_inputs: int, max_chars: int) -> None:
    """Refuse (413) a request over the per-request caps, naming the limit and the value sent."""
    if len(texts) > max_inputs:
        raise PayloadTooLargeError(
            f"input has {len(texts)} items; the limit is {max_inputs} inputs per request "
            "(max_embedding_inputs): send them in several requests"
        )
    chars = sum(len(text) for text in texts)
    if chars > max_chars:
        raise PayloadTooLargeError(
            f"input has {chars} characters in all; the limit is {max_chars} characters per "
            "request (max_embedding_chars): send them in several requests"
        )


@dataclass
class ServedModel:
    served_name: str
    model_ref: str
    path: Path
    deployment_id: str
    model: Any  # SentenceTransformer
    runtime: RuntimeChoice | None = None  # which inference runtime computes it, and why
    created: int = field(default_factory=lambda: int(time.time()))


@dataclass(frozen=True)
class Embeddings:
    """The answer to one embeddings request: the vectors and the tokens the model read."""

    vectors: np.ndarray
    prompt_tokens: int


class ServingRegistry:
    """Served name -> the deployments serving it; the most recently loaded one answers."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._served: dict[str, list[ServedModel]] = {}

    def add(self, entry: ServedModel) -> None:
        with self._lock:
            stack = [e for e in self._served.get(entry.served_name, []) if e.deployment_id != entry.deployment_id]
            self._served[entry.served_name] = stack + [entry]

    def remove_deployment(self, deployment_id: str) -> None:
        with self._lock:
            removed = [e for stack in self._served.values() for e in stack if e.deployment_id == deployment_id]
            for name in list(self._served):
                self._served[name] = [e for e in self._served[name] if e.deployment_id != deployment_id]
                if not self._served[name]:
                    del self._served[name]
            still_used = {str(e.path) for stack in self._served.values() for e in stack}
        for entry in removed:
            if str(entry.path) not in still_used:
                embedding.unload_model(entry.path)

    def get(self, served_name: str) -> ServedModel | None:
        with self._lock:
            stack = self._served.get(served_name)
            return stack[-1] if stack else None

    def entries(self) -> list[ServedModel]:
        with self._lock:
            return [stack[-1] for _, stack in sorted(self._served.items())]

    def names(self) -> list[str]:
        return [e.served_name for e in self.entries()]

    def served_model(self, model_id: str) -> ServedModel:
        entry = self.get(model_id)
        if entry is None:
            served = self.names()
            hint = ""
            if "@" in model_id and unversioned(model_id) in served:
                hint = f" NIM serves models under their unversioned name: use {unversioned(model_id)!r}."
            raise ModelNotServed(
                f"model {model_id!r} is not served here; served models: {', '.join(served) if served else '(none)'}."
                f"{hint} Deploy a model with POST /v1/deployment/model-deployments."
            )
        return entry

    def embed_texts(
        self,
        model_id: str,
        texts: list[str],
        input_type: str | None = None,
        truncate: str = "END",
        batch_size: int = 32,
        show_progress_bar: bool = False,
    ) -> np.ndarray:
        """Embeddings of ``texts`` from the served model ``model_id`` (float32, shape (n, dim)), without HTTP."""
        entry = self.served_model(model_id)
        return embedding.embed(
            entry.model,
            texts,
            input_type=input_type,
            truncate=truncate,
            batch_size=batch_size,
            show_progress_bar=show_progress_bar,
        )

    def embeddings(
        self,
        model_id: str,
        texts: list[str],
        input_type: str | None,
        truncate: str,
        dimensions: int | None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Embeddings:
        """A NIM embeddings request: checks the input and the requested dimensions, embeds, counts tokens.
        ``should_stop()`` is asked between batches of ``ENCODE_BATCH`` texts (``EmbeddingAbandoned`` when true)."""
        if not texts:
            raise MalformedRequestError("input must be a string or a non-empty list of strings")
        entry = self.served_model(model_id)
        dim = embedding.embedding_dimension(entry.model)
        if dimensions is not None and dimensions != dim:
            raise MalformedRequestError(
                f"dimensions={dimensions} is not supported by {model_id}: it returns {dim}-dimensional embeddings only"
            )
        parts = []
        for start in range(0, len(texts), ENCODE_BATCH):
            if should_stop is not None and should_stop():
                raise EmbeddingAbandoned(f"the client went away after {start} of {len(texts)} inputs were encoded")
            batch = texts[start : start + ENCODE_BATCH]
            parts.append(
                embedding.embed(
                    entry.model,
                    batch,
                    input_type=input_type,
                    truncate=truncate,
                    batch_size=ENCODE_BATCH,
                    first_index=start,
                )
            )
        vectors = np.concatenate(parts) if len(parts) > 1 else parts[0]
        if not np.isfinite(vectors).all():
            raise ConflictError(
                f"model {model_id} produced non-finite embeddings (NaN/Infinity): its weights are "
                "broken, so it cannot serve; deploy another version"
            )
        return Embeddings(vectors, embedding.count_tokens(entry.model, texts))

    def served_models_list(self) -> dict[str, Any]:
        """The NIM/OpenAI ``GET /v1/models`` answer: every served model under its unversioned name."""
        return {
            "object": "list",
            "data": [
                {
                    "id": e.served_name,
                    "object": "model",
                    "created": e.created,
                    "owned_by": e.served_name.split("/")[0],
                    "root": e.model_ref,
                    "deployment": e.deployment_id,
                }
                for e in self.entries()
            ],
        }
