"""``PlatformContext``: every service of one running platform, built once when the app starts.

``build_context(settings)`` opens the store, seeds the default customization target, restores deployments and
starts the job runners (each first marks the jobs a dead process left active as failed); ``close()`` stops them
in reverse order and closes the store. Routes reach the services through ``api/deps.py``.
"""

from __future__ import annotations

import logging
from contextlib import ExitStack
from dataclasses import dataclass, field

from . import set_aside
from .home_lock import serve_lock
from .services.automodel import AutomodelService
from .services.customization import CustomizationService
from .services.datastore_namespaces import DatastoreNamespaces
from .services.deployments import DeploymentService
from .services.entities import EntitiesService
from .services.evaluation.resources import EvaluatorResources
from .services.evaluation.service import EvaluationService
from .services.leftovers import clean_crash_leftovers, damaged_repos
from .services.model_weights import seed_defaults
from .services.repo_store import RepoStore
from .services.row_keys import ROW_KEYS
from .services.serving import ServingRegistry
from .services.training.service import CustomizationTrainer
from .services.v2_deployments import V2Deployments
from .services.v2_filesets import FilesetFetcher
from .settings import PlatformSettings
from .store import EntityStore

log = logging.getLogger("embed_ft.platform")


@dataclass
class PlatformContext:
    settings: PlatformSettings
    store: EntityStore
    repos: RepoStore
    datastore_namespaces: DatastoreNamespaces
    entities: EntitiesService
    serving: ServingRegistry
    deployments: DeploymentService
    trainer: CustomizationTrainer
    customization: CustomizationService
    evaluator: EvaluationService
    evaluator_resources: EvaluatorResources
    automodel: AutomodelService  # v2 automodel jobs, run by `trainer`
    v2_deployments: V2Deployments  # v2 deployment configs and deployments, over `deployments`
    home_lock: ExitStack = field(default_factory=ExitStack)  # the home's serve lock, released by close()

    def close(self) -> None:
        """Stop the job runners (newest first), then close the store and release the home; a failing step does
        not stop the others."""
        for stop in (self.evaluator.stop, self.trainer.shutdown):
            try:
                stop()
            except Exception:  # shutdown must go on for the others
                log.exception("stopping %s failed", stop.__qualname__)
        self.store.close()
        self.home_lock.close()


def build_context(settings: PlatformSettings) -> PlatformContext:
    """Open the platform's state under ``settings.home`` and start its services.

    Everything that repairs a home (stored rows, crash leftovers, restart recovery of jobs) runs under the home's
    serve lock, which the context holds until ``close()``: ``home_lock.LockHeld`` when another process serves it.
    """
    settings.ensure_dirs()
    home_lock = ExitStack()
    home_lock.enter_context(serve_lock(settings.home))
    try:
        return _build(settings, home_lock)
    except BaseException:
        home_lock.close()
        raise


def _build(settings: PlatformSettings, home_lock: ExitStack) -> PlatformContext:
    store = EntityStore(settings.db_path, ROW_KEYS)
    removed = clean_crash_leftovers(settings, store)
    if removed:
        log.warning("removed %d leftover(s) of a platform that was killed", len(removed))
    repos = RepoStore(settings)
    serving = ServingRegistry()
    trainer = CustomizationTrainer(settings, store, repos)
    filesets = FilesetFetcher(settings)
    trainer.fetch_v2_dataset = filesets.fetch_job_data
    evaluator = EvaluationService(settings, store, repos, serving)
    deployments = DeploymentService(settings, store, serving)
    ctx = PlatformContext(
        settings=settings,
        store=store,
        repos=repos,
        datastore_namespaces=DatastoreNamespaces(store, repos),
        entities=EntitiesService(store, settings, model_users=deployments.deployments_of_model),
        serving=serving,
        deployments=deployments,
        trainer=trainer,
        customization=CustomizationService(settings, store, trainer),
        evaluator=evaluator,
        evaluator_resources=EvaluatorResources(store, evaluator),
        automodel=AutomodelService(settings, store, trainer, filesets),
        v2_deployments=V2Deployments(settings, store, deployments),
        home_lock=home_lock,
    )
    seed_defaults(store)
    ctx.datastore_namespaces.adopt_existing()
    trainer.start()
    ctx.deployments.restore()
    evaluator.start()
    _record_set_aside(settings, store)
    return ctx


def _record_set_aside(settings: PlatformSettings, store: EntityStore) -> None:
    """Name what this start-up did not use (``platform status`` shows it); the rest of the home is served."""
    items = [
        set_aside.SetAside(
            f"stored {row['kind']} {row['id']!r}",
            row["reason"],
            f"kept in table quarantined of {settings.db_path}; the name is free again",
        )
        for row in store.quarantined()
    ]
    items += [
        set_aside.SetAside(f"Data Store repo {label}", message, "delete the repo to remove it")
        for label, message in damaged_repos(settings)
    ]
    set_aside.record(settings.home, items)
    for item in items:
        log.error("set aside at start-up: %s", item.line())
