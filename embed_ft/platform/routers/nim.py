"""NIM inference (``{NIM_URL}/v1/embeddings``, ``{NIM_URL}/v1/models``), OpenAI/NIM compatible.

Models are served under their **unversioned** name ``ns/name`` (``ns/name@cust-...`` -> ``ns/name``), as
the real NIM gateway does. The registry of served models (``ctx.services["nim"]``) is filled by the
Deployment router when a deployment becomes ready and emptied when it is deleted. In-process callers
(the evaluator) use ``embed_texts`` instead of HTTP.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from .. import models

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

router = APIRouter()


class ModelNotServed(LookupError):
    """No ready deployment serves this model name; the message lists the names that are served."""


@dataclass
class ServedModel:
    served_name: str
    model_ref: str
    path: Path
    deployment_id: str
    model: Any  # SentenceTransformer
    created: int = field(default_factory=lambda: int(time.time()))


class NimRegistry:
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
                models.unload_model(entry.path)

    def get(self, served_name: str) -> ServedModel | None:
        with self._lock:
            stack = self._served.get(served_name)
            return stack[-1] if stack else None

    def entries(self) -> list[ServedModel]:
        with self._lock:
            return [stack[-1] for _, stack in sorted(self._served.items())]

    def names(self) -> list[str]:
        return [e.served_name for e in self.entries()]


def registry(ctx) -> NimRegistry:
    return ctx.services.setdefault("nim", NimRegistry())


def served_model(ctx, model_id: str) -> ServedModel:
    entry = registry(ctx).get(model_id)
    if entry is None:
        served = registry(ctx).names()
        hint = ""
        if "@" in model_id and models.unversioned(model_id) in served:
            hint = f" NIM serves models under their unversioned name: use {models.unversioned(model_id)!r}."
        raise ModelNotServed(
            f"model {model_id!r} is not served here; served models: {', '.join(served) if served else '(none)'}."
            f"{hint} Deploy a model with POST /v1/deployment/model-deployments."
        )
    return entry


def embed_texts(
    ctx, model_id: str, texts: list[str], input_type: str | None = None, truncate: str = "END",
    batch_size: int = 32, show_progress_bar: bool = False,
) -> "np.ndarray":
    """Embeddings of ``texts`` from the served model ``model_id`` (float32, shape (n, dim)), without HTTP."""
    entry = served_model(ctx, model_id)
    return models.embed(entry.model, texts, input_type=input_type, truncate=truncate,
                        batch_size=batch_size, show_progress_bar=show_progress_bar)


class EmbeddingsIn(BaseModel):
    model_config = ConfigDict(extra="allow")  # OpenAI clients send "user" and the like
    input: str | list[str]
    model: str
    input_type: Literal["query", "passage"] | None = None
    encoding_format: Literal["float", "base64"] = "float"
    # NIM's own default is NONE (refuse over-long input); END matches OpenAI clients, which never send it.
    truncate: Literal["NONE", "START", "END"] = "END"
    dimensions: int | None = None


@router.post("/v1/embeddings")
def create_embeddings(body: EmbeddingsIn, request: Request):
    # A sync endpoint: FastAPI runs it in its thread pool, so encoding never blocks the event loop.
    ctx = request.app.state.ctx
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    if not texts:
        raise HTTPException(400, "input must be a string or a non-empty list of strings")
    try:
        entry = served_model(ctx, body.model)
    except ModelNotServed as exc:
        raise HTTPException(404, str(exc)) from exc
    dim = models.embedding_dimension(entry.model)
    if body.dimensions is not None and body.dimensions != dim:
        raise HTTPException(400, f"dimensions={body.dimensions} is not supported by {body.model}: "
                                 f"it returns {dim}-dimensional embeddings only")
    try:
        vectors = models.embed(entry.model, texts, input_type=body.input_type, truncate=body.truncate)
    except models.ModelInputError as exc:
        raise HTTPException(400, str(exc)) from exc
    tokens = models.count_tokens(entry.model, texts)
    if body.encoding_format == "base64":
        data = [{"index": i, "embedding": models.encode_base64(v), "object": "embedding"} for i, v in enumerate(vectors)]
    else:
        data = [{"index": i, "embedding": v.tolist(), "object": "embedding"} for i, v in enumerate(vectors)]
    # JSONResponse directly: FastAPI's jsonable_encoder would walk every float of a plain dict answer
    # (~37 ms for 64 x 384 floats on the bench machine, on top of json.dumps' ~25 ms).
    return JSONResponse({"object": "list", "data": data, "model": body.model,
                         "usage": {"prompt_tokens": tokens, "total_tokens": tokens}})


def served_models_list(ctx) -> dict[str, Any]:
    """The NIM/OpenAI ``GET /v1/models`` answer: every served model under its unversioned name."""
    return {"object": "list", "data": [
        {"id": e.served_name, "object": "model", "created": e.created, "owned_by": e.served_name.split("/")[0],
         "root": e.model_ref, "deployment": e.deployment_id}
        for e in registry(ctx).entries()
    ]}


# Query parameters that only Entity Store model listings carry.
ENTITY_STORE_LIST_PARAMS = ("sort", "page", "page_size")


def is_nim_models_request(request: Request) -> bool:
    """``GET /v1/models`` is both the Entity Store model list (NEMO_URL) and the NIM model list (NIM_URL), and
    both base URLs are this one port. A request without Entity Store parameters (``filter[...]``, ``sort``,
    ``page``, ``page_size``) is the NIM/OpenAI one: that is what OpenAI clients and NIM readiness polls send."""
    return not any(k.startswith("filter[") or k in ENTITY_STORE_LIST_PARAMS for k in request.query_params.keys())


@router.get("/v1/models")
def list_served_models(request: Request):
    return served_models_list(request.app.state.ctx)


def on_startup(ctx) -> None:
    registry(ctx)
