"""NIM inference gateway client (OpenAI-compatible ``{NIM_URL}/v1/models`` and ``/v1/embeddings``)."""

from __future__ import annotations

import base64
import binascii
import math
import struct
from collections.abc import Callable, Sequence
from typing import Any

from .errors import NemoResponseError
from .http import ServiceHTTP
from .polling import poll
from .v1.contract import EmbeddingsRequest, ServedModels


def decode_base64_embedding(value: str, index: int) -> list[float]:
    """One base64 embedding (little-endian float32, the NIM/OpenAI encoding) as floats."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError, TypeError):
        raise NemoResponseError(f"embedding {index}: not valid base64") from None
    if len(raw) % 4:
        raise NemoResponseError(f"embedding {index}: {len(raw)} bytes is not a whole number of float32 values")
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


class NimClient:
    def __init__(self, http: ServiceHTTP) -> None:
        self.http = http

    def list_models(self) -> list[str]:
        """Ids of the models the gateway serves now."""
        body = self.http.get("/v1/models", call="list models")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, list):
            raise NemoResponseError(f"NIM: GET /v1/models should return {{'data': [...]}}, got {str(body)[:200]!r}")
        served = ServedModels.model_validate(body)
        return [str(item["id"]) for item in served.data if isinstance(item, dict) and item.get("id")]

    def wait_for_model(
        self,
        model: str,
        timeout_s: float,
        interval_s: float = 5.0,
        on_update: Callable[[list[str]], None] | None = None,
        **poll_kwargs: Any,
    ) -> list[str]:
        """Poll ``/v1/models`` until ``model`` is listed (the gateway registers it after the deployment is ready)."""
        return poll(
            self.list_models,
            lambda ids: model in ids,
            timeout_s=timeout_s,
            interval_s=interval_s,
            what=f"the NIM gateway to list model {model!r}",
            on_update=on_update,
            status_of=lambda ids: f"listed models: {sorted(ids)[:10]}",
            **poll_kwargs,
        )

    def embed(
        self,
        texts: Sequence[str],
        model: str,
        input_type: str = "query",
        encoding_format: str = "float",
        truncate: str | None = None,
        dimensions: int | None = None,
    ) -> list[list[float]]:
        """Embeddings of ``texts`` in input order; validated (count, one dimension, finite values)."""
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        if not texts:
            return []
        if encoding_format not in ("float", "base64"):
            raise ValueError(f"encoding_format must be 'float' or 'base64', got {encoding_format!r}")
        request = EmbeddingsRequest.model_validate(
            {"input": list(texts), "model": model, "input_type": input_type, "encoding_format": encoding_format}
            | ({"truncate": truncate} if truncate else {})
            | ({"dimensions": dimensions} if dimensions else {})
        )
        body = request.body()
        response = self.http.post("/v1/embeddings", json=body, call=f"embed {len(texts)} texts with {model}")
        data = response.get("data") if isinstance(response, dict) else None
        if not isinstance(data, list) or len(data) != len(texts):
            got = len(data) if isinstance(data, list) else f"no 'data' list ({str(response)[:120]!r})"
            raise NemoResponseError(
                f"NIM embeddings for model {model!r}: sent {len(texts)} texts, got {got} embeddings"
            )
        ordered = sorted(data, key=lambda item: item.get("index", 0) if isinstance(item, dict) else 0)
        vectors: list[list[float]] = []
        for position, item in enumerate(ordered):
            embedding = item.get("embedding") if isinstance(item, dict) else None
            if isinstance(embedding, str):
                vector = decode_base64_embedding(embedding, position)
            elif isinstance(embedding, list):
                vector = embedding
            else:
                raise NemoResponseError(f"embedding {position} of model {model!r}: missing or not a list/base64 string")
            vectors.append(self._validated(vector, position, model))
        dims = {len(v) for v in vectors}
        if len(dims) != 1:
            raise NemoResponseError(f"NIM embeddings for model {model!r} have inconsistent dimensions: {sorted(dims)}")
        if dimensions and dims != {dimensions}:
            raise NemoResponseError(
                f"NIM embeddings for model {model!r}: asked for {dimensions} dims, got {dims.pop()}"
            )
        return vectors

    @staticmethod
    def _validated(vector: list[Any], position: int, model: str) -> list[float]:
        if not vector:
            raise NemoResponseError(f"embedding {position} of model {model!r} is empty")
        try:
            floats = [float(x) for x in vector]
        except (TypeError, ValueError):
            raise NemoResponseError(f"embedding {position} of model {model!r} has non-numeric values") from None
        bad = next((i for i, x in enumerate(floats) if not math.isfinite(x)), None)
        if bad is not None:
            raise NemoResponseError(
                f"embedding {position} of model {model!r} has a non-finite value at dimension {bad}: {floats[bad]}"
            )
        return floats
