"""The FastAPI application of the local platform: one router per NeMo service on one port.

NEMO_URL and NDS_URL are the root; NIM_URL is the root plus ``NIM_PATH_PREFIX`` (``/nim``), so that
``NEMO_URL/v1/models`` is always the Entity Store and ``NIM_URL/v1/models`` always the served models, as on a
cluster. ``POST /v1/embeddings`` at the root stays as an alias (nothing else answers that path).

The lifespan builds the ``PlatformContext`` (every service) and closes it; routes reach it through
``api/deps.py``. Domain errors become HTTP answers in one exception handler (``api/errors.py``).
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from contextlib import asynccontextmanager

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

from .api import customizer, datastore, deployment, entities, evaluator, nim, v2_customization, v2_models
from .api.body import RequestBodyGuard
from .api.errors import HANDLED, domain_error_handler
from .context import PlatformContext, build_context
from .settings import NIM_PATH_PREFIX, PlatformSettings

HEALTH_PATHS = ("/health", "/v1/health/ready", "/v1/health/live")
UNAUTHENTICATED_PATHS = {*HEALTH_PATHS, *(f"{NIM_PATH_PREFIX}{path}" for path in HEALTH_PATHS[1:])}
ROUTERS = (
    datastore.router,
    entities.router,
    customizer.router,
    deployment.router,
    evaluator.router,
    v2_customization.router,  # NeMo Platform v2: automodel jobs
    v2_models.router,  # v2: deployment configs, deployments, their providers and gateway routes
)
# Changes the app once it is built (the tests' fault injection, embed_ft_tests/faults.py, is the one user); what it
# returns, if anything, is called with the context when the platform starts.
AppExtension = Callable[[FastAPI], Callable[[PlatformContext], None] | None]


def create_app(settings: PlatformSettings | None = None, extensions: Sequence[AppExtension] = ()) -> FastAPI:
    settings = settings or PlatformSettings()
    on_start: list[Callable[[PlatformContext], None]] = []

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx = build_context(settings)
        app.state.ctx = ctx
        for started in on_start:
            started(ctx)
        try:
            yield
        finally:
            ctx.close()

    app = FastAPI(title="embed-ft local NeMo platform", version="1", lifespan=lifespan)
    for error_class in HANDLED:
        app.add_exception_handler(error_class, domain_error_handler)
    # Added before the token check, so that it runs after it: bodies of unauthenticated requests are never read.
    app.add_middleware(RequestBodyGuard, settings=settings)

    @app.middleware("http")
    async def require_bearer_token(request: Request, call_next):
        token = settings.token
        if token and request.url.path not in UNAUTHENTICATED_PATHS:
            header = request.headers.get("authorization", "")
            scheme, _, given = header.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token.encode()):
                return JSONResponse({"detail": "missing or invalid bearer token"}, status_code=401)
        return await call_next(request)

    @app.get("/health")
    @app.get("/v1/health/ready")
    @app.get("/v1/health/live")
    @app.get(f"{NIM_PATH_PREFIX}/v1/health/ready")
    @app.get(f"{NIM_PATH_PREFIX}/v1/health/live")
    async def health() -> dict[str, str]:  # async: answered on the event loop, never queued behind encodes
        return {"status": "ok", "service": "embed-ft-local-platform"}

    for router in ROUTERS:
        app.include_router(router)
    app.include_router(nim.router, prefix=NIM_PATH_PREFIX)  # NIM_URL
    app.add_api_route("/v1/embeddings", nim.create_embeddings, methods=["POST"])  # the root alias (see above)
    # v2's inference gateway in front of a deployment's provider: the same route, once the deployment is READY.
    app.add_api_route(
        v2_models.GATEWAY_EMBEDDINGS,
        nim.create_embeddings,
        methods=["POST"],
        dependencies=[Depends(v2_models.ready_provider)],
    )
    for extend in extensions:
        if (started := extend(app)) is not None:
            on_start.append(started)
    return app
