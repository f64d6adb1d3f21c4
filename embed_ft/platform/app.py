"""The FastAPI application of the local platform: one router per NeMo service on one port.

The lifespan builds the ``PlatformContext`` (every service) and closes it; routes reach it through
``api/deps.py``. Domain errors become HTTP answers in one exception handler (``api/errors.py``).
"""

from __future__ import annotations

import hmac
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from . import faults
from .api import customizer, datastore, deployment, entities, evaluator, nim
from .api.errors import HANDLED, domain_error_handler
from .context import build_context
from .settings import PlatformSettings

UNAUTHENTICATED_PATHS = {"/health", "/v1/health/ready", "/v1/health/live"}
# Order matters where paths overlap: the Entity Store's GET /v1/models also answers the NIM's (see api/entities.py).
ROUTERS = (datastore.router, entities.router, customizer.router, deployment.router, nim.router, evaluator.router)


def create_app(settings: PlatformSettings | None = None) -> FastAPI:
    settings = settings or PlatformSettings()
    job_faults = None

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        ctx = build_context(settings)
        app.state.ctx = ctx
        if job_faults is not None:
            job_faults.attach(ctx)
        try:
            yield
        finally:
            ctx.close()

    app = FastAPI(title="embed-ft local NeMo platform", version="1", lifespan=lifespan)
    for error_class in HANDLED:
        app.add_exception_handler(error_class, domain_error_handler)

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
    def health() -> dict[str, str]:
        return {"status": "ok", "service": "embed-ft-local-platform"}

    for router in ROUTERS:
        app.include_router(router)
    if settings.enable_faults:  # test-only: never enabled from the environment or the command line
        job_faults = faults.install(app)
    return app
