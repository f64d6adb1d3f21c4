"""Embedders: texts -> float32 vectors, batch by batch, in the order ``SentenceTransformer.encode`` batches them
(``np.argsort`` of negative character lengths), so that an endpoint running sentence-transformers sees exactly
the batches BEIR would encode and embeddings come out bit-identical.
"""

from __future__ import annotations

import base64
from typing import Any, Callable, Sequence
from urllib.parse import urlsplit

import numpy as np
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from .errors import EmbeddingEndpointError, EvaluationCancelled, EvaluationError, StopFn

DEFAULT_BATCH_SIZE = 64


def length_sorted_order(texts: Sequence[str]) -> np.ndarray:
    """The order ``SentenceTransformer.encode`` processes texts in (longest first, same ``np.argsort`` call)."""
    return np.argsort([-len(text) for text in texts])


class Embedder:
    """Turns texts into float32 vectors, batch by batch. Subclasses implement ``embed_batch`` and ``identity``."""

    batch_size: int = DEFAULT_BATCH_SIZE
    # Which inference runtime computes the vectors, and why (RuntimeChoice.metadata()); None where unknown (remote).
    runtime: dict[str, Any] | None = None

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
            idx = order[start : start + self.batch_size]
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

    def _checked(self, answer: Any, expected_rows: int, previous: np.ndarray | None) -> np.ndarray:
        vectors: np.ndarray = np.asarray(answer, dtype=np.float32)
        where = self.describe()
        if vectors.ndim != 2 or vectors.shape[0] != expected_rows:
            raise EmbeddingEndpointError(
                f"embeddings from {where}: expected {expected_rows} vectors, got an array of shape {vectors.shape}"
            )
        if vectors.shape[1] == 0:
            raise EmbeddingEndpointError(f"embeddings from {where} have 0 dimensions")
        if previous is not None and previous.shape[1] != vectors.shape[1]:
            raise EmbeddingEndpointError(
                f"embeddings from {where} changed dimension from "
                f"{previous.shape[1]} to {vectors.shape[1]} between batches"
            )
        if not np.isfinite(vectors).all():
            bad = int((~np.isfinite(vectors)).any(axis=1).sum())
            raise EmbeddingEndpointError(
                f"embeddings from {where}: {bad} of {expected_rows} vectors contain NaN or infinity"
            )
        return vectors


class CallableEmbedder(Embedder):
    """An embedder over a Python function ``fn(texts, input_type) -> array`` (in-process models, tests)."""

    def __init__(
        self,
        fn: Callable[[list[str], str], Any],
        identity: dict[str, Any],
        batch_size: int = DEFAULT_BATCH_SIZE,
        runtime: dict[str, Any] | None = None,
    ):
        self._fn = fn
        self._identity = dict(identity)
        self.batch_size = int(batch_size)
        self.runtime = runtime

    def identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def embed_batch(self, texts: list[str], input_type: str) -> np.ndarray:
        return np.asarray(self._fn(texts, input_type))


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
        retry = Retry(
            total=3,
            connect=3,
            read=0,
            status=0,
            other=0,
            redirect=0,
            allowed_methods=None,
            backoff_factor=0.5,
            raise_on_status=False,
        )
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
            return self._session.post(
                self.url, json=self._body(texts, input_type), headers=self._headers, timeout=self.timeout
            )
        except requests.RequestException as exc:
            raise EmbeddingEndpointError(
                f"embeddings request to {self.describe()} failed: {type(exc).__name__}: {exc}"
            ) from None

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
                f"embeddings endpoint {self.describe()} returned vectors "
                f"of different dimensions {sorted(dims)} in one batch"
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
