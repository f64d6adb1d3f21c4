"""NIM inference routes ``{NIM_URL}/v1/embeddings`` (OpenAI/NIM compatible) and ``{NIM_URL}/v1/models`` (the served
models). ``app.py`` mounts this router under ``NIM_PATH_PREFIX`` (NIM_URL), apart from the Entity Store's
``/v1/models`` at NEMO_URL.
"""

from __future__ import annotations

import anyio
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from ...nemo.v1.contract import EmbeddingsRequest
from ..services.embedding import encode_base64
from ..services.serving import check_embedding_input
from .deps import Serving, Settings

router = APIRouter()
# Encodes that run at once (each also takes its model's lock); more requests wait for a slot.
ENCODE_WORKERS = 2


@router.get("/v1/models")
def list_served_models(serving: Serving):
    """The NIM/OpenAI model list: every served model under its unversioned name."""
    return serving.served_models_list()


@router.post("/v1/embeddings")
async def create_embeddings(body: EmbeddingsRequest, request: Request, serving: Serving, settings: Settings):
    """Encodes run in a worker thread (at most ``ENCODE_WORKERS`` at once), never on the event loop, so /health
    answers meanwhile; between batches the encode asks whether the client is still there and stops if not."""
    texts = [body.input] if isinstance(body.input, str) else list(body.input)
    check_embedding_input(texts, settings.max_embedding_inputs, settings.max_embedding_chars)

    gone = getattr(request.state, "client_gone", None)  # set by the body guard (api/body.py) on disconnect

    def client_gone() -> bool:
        return gone is not None and gone.is_set()

    def encode() -> JSONResponse:
        result = serving.embeddings(
            body.model, texts, body.input_type, body.truncate, body.dimensions, should_stop=client_gone
        )
        if body.encoding_format == "base64":
            data = [
                {"index": i, "embedding": encode_base64(v), "object": "embedding"} for i, v in enumerate(result.vectors)
            ]
        else:
            data = [{"index": i, "embedding": v.tolist(), "object": "embedding"} for i, v in enumerate(result.vectors)]
        # JSONResponse directly (rendered here, off the event loop): FastAPI's jsonable_encoder would walk every
        # float of a plain dict answer (~37 ms for 64 x 384 floats on the bench machine, on top of json.dumps').
        tokens = result.prompt_tokens
        return JSONResponse(
            {
                "object": "list",
                "data": data,
                "model": body.model,
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    return await anyio.to_thread.run_sync(encode, limiter=_encode_limiter(request))


def _encode_limiter(request: Request) -> anyio.CapacityLimiter:
    """The app's bound on concurrent encodes (one per app: a limiter belongs to its event loop)."""
    limiter = getattr(request.app.state, "encode_limiter", None)
    if limiter is None:
        limiter = request.app.state.encode_limiter = anyio.CapacityLimiter(ENCODE_WORKERS)
    return limiter
