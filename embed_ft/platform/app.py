"""The FastAPI application of the local platform: one router per NeMo service on one port."""

from __future__ import annotations

import hmac
import logging
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from .settings import PlatformSettings
from .store import EntityStore, utc_now

log = logging.getLogger("embed_ft.platform")

# Job kinds whose non-terminal documents are stale after a restart (their worker died with the old process).
JOB_KINDS = ("customization_job", "evaluation_job")
ACTIVE_STATUSES = ("created", "pending", "running", "cancelling")
UNAUTHENTICATED_PATHS = {"/health", "/v1/health/ready", "/v1/health/live"}


@dataclass
class PlatformContext:
    settings: PlatformSettings
    store: EntityStore
    # Runtime objects owned by the service modules (trainer, deployments, evaluator, ...), set at start-up.
    services: dict[str, Any] = field(default_factory=dict)


def recover_interrupted_jobs(store: EntityStore) -> int:
    """Mark jobs that were active when the platform died as failed, with a detail that says why."""
    count = 0
    for kind, id_, doc in store.kinds_with_status(JOB_KINDS, ACTIVE_STATUSES):
        logs = list(doc.get("status_logs") or [])
        detail = (
            f"The platform process stopped while this job was {doc.get('status')}; "
            "the job was interrupted and will not resume. Submit it again."
        )
        logs.append({"updated_at": utc_now(), "message": "PlatformRestarted", "detail": detail})
        patch: dict[str, Any] = {"status": "failed", "status_logs": logs}
        details = dict(doc.get("status_details") or {})
        details["message"] = detail
        patch["status_details"] = details
        store.update(kind, id_, patch)
        count += 1
    return count


def create_app(settings: PlatformSettings | None = None) -> FastAPI:
    settings = settings or PlatformSettings()
    settings.ensure_dirs()
    store = EntityStore(settings.db_path)
    ctx = PlatformContext(settings=settings, store=store)

    from .routers import customizer, datastore, deployment, entities, evaluator, nim

    modules = [datastore, entities, customizer, deployment, nim, evaluator]

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        recovered = recover_interrupted_jobs(store)
        if recovered:
            log.warning("marked %d interrupted job(s) as failed after restart", recovered)
        for module in modules:
            hook = getattr(module, "on_startup", None)
            if hook:
                hook(ctx)
        try:
            yield
        finally:
            for module in reversed(modules):
                hook = getattr(module, "on_shutdown", None)
                if hook:
                    try:
                        hook(ctx)
                    except Exception:  # shutdown must go on for the others
                        log.exception("shutdown hook of %s failed", module.__name__)
            store.close()

    app = FastAPI(title="embed-ft local NeMo platform", version="1", lifespan=lifespan)
    app.state.ctx = ctx

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

    for module in modules:
        app.include_router(module.router)
    # --- fault injection hook (issue 7): test-only, never enabled from the environment or the command line.
    if settings.enable_faults:
        from .faults import install as install_faults

        install_faults(app, ctx)
    # --- end of fault injection hook
    return app
