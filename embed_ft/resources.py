"""One Dagster resource per NeMo service, each a thin shell over its client in ``embed_ft.nemo``.

Configuration comes from the environment (the tutorial's names): ``NDS_URL`` (Data Store), ``NEMO_URL``
(Entity Store, Customizer, Deployment Management, Evaluator), ``NIM_URL`` (NIM gateway), optional bearer tokens
``NDS_TOKEN``/``NEMO_TOKEN``/``NIM_TOKEN``, ``HF_TOKEN``, ``WANDB_API_KEY`` and ``NEMO_NAMESPACE``. When a URL is
not set, the resource points at the embedded local platform, started on demand (``launcher.ensure_running``).
"""

from __future__ import annotations

import os
from typing import Any, ClassVar, Optional

import requests
from dagster import ConfigurableResource, EnvVar
from pydantic import Field, PrivateAttr

from .nemo.customizer import CustomizerClient
from .nemo.datastore import DataStoreClient
from .nemo.deployment import DeploymentClient
from .nemo.entity_store import EntityStoreClient
from .nemo.evaluator import EvaluatorClient
from .nemo.http import ServiceHTTP
from .nemo.nim import NimClient
from .nemo.v2.profile import Profile, resolve
from .platform.launcher import ensure_running
from .platform.settings import PlatformSettings, service_urls

DEFAULT_NAMESPACE = "embed-sft-ns"
DEFAULT_API = "v1"
LOCAL_PLATFORM_SERVICE = "embed-ft-local-platform"
API_ENV = "EMBED_FT_NEMO_API"


def local_platform_url() -> str:
    """URL of the embedded local platform for this ``EMBED_FT_HOME``, starting it if it is not running."""
    return ensure_running(PlatformSettings())


def is_local_platform(base_url: str) -> bool:
    """Whether ``base_url`` is an embed-ft local platform (its health route names itself); False when unsure."""
    try:
        answer = requests.get(f"{base_url.rstrip('/')}/health", timeout=(3, 5))
        return answer.ok and answer.json().get("service") == LOCAL_PLATFORM_SERVICE
    except (requests.RequestException, ValueError, AttributeError):
        return False


class NemoServiceResource(ConfigurableResource):
    """Common settings of one NeMo service: where it is, how to authenticate, how long to wait."""

    base_url: Optional[str] = Field(
        default=None, description="Service base URL; empty means the embedded local platform (started on demand)."
    )
    token: Optional[str] = Field(default=None, description="Bearer token, if the cluster requires one.")
    connect_timeout_s: float = Field(default=5.0, description="TCP connect timeout of every call.")
    read_timeout_s: float = Field(default=60.0, description="Read timeout of every call.")
    retries: int = Field(default=3, description="Retries of idempotent calls (GET/HEAD/DELETE) only.")
    api: str = Field(
        default=DEFAULT_API,
        description="NeMo API generation of base_url: v1 (NeMo Microservices 25.x), v2 (NeMo Platform 26.x / "
        "nemo-helix) or auto (probe once, log what was found).",
    )

    # The HTTP layer's service name (error texts name it); the v2 routes the embedded platform serves itself.
    service: ClassVar[str] = "nemo"
    embedded_v2: ClassVar[bool] = False

    _resolved_url: Optional[str] = PrivateAttr(default=None)
    _is_local: Optional[bool] = PrivateAttr(default=None)
    _profile: Optional[str] = PrivateAttr(default=None)

    @property
    def uses_local_platform(self) -> bool:
        """True for the embedded platform (chooses per-backend defaults): no URL set, or the server says so."""
        if self._is_local is None:
            self._is_local = not self.base_url or is_local_platform(self.url())
        return self._is_local

    def url(self) -> str:
        if self._resolved_url is None:
            self._resolved_url = (self.base_url or local_platform_url()).rstrip("/")
        return self._resolved_url

    def api_profile(self) -> Profile:
        """``v1`` or ``v2``: the setting, or (``auto``) what one probe of the server found."""
        if self._profile is None:
            if not self.base_url and not self.embedded_v2 and self.api.strip().lower() == "v2":
                raise ValueError(
                    f"{API_ENV}=v2 needs the NeMo Platform's URL in NEMO_URL (embed-ft run --backend helix starts "
                    f"one on this machine): the embedded local platform does not serve the v2 {self.service} routes"
                )
            self._profile = resolve(self.api, self.url() if self.base_url else None)
        return self._profile  # type: ignore[return-value]

    def http(self) -> ServiceHTTP:
        """This service's HTTP layer (the v2 clients take it)."""
        return self._http(self.service)

    def _http(self, service: str, extra_headers: Optional[dict] = None) -> ServiceHTTP:
        return ServiceHTTP(
            self.url(),
            service,
            token=self.token or None,
            timeout=(self.connect_timeout_s, self.read_timeout_s),
            retries=self.retries,
            extra_headers=extra_headers,
        )


class DataStoreResource(NemoServiceResource):
    """NeMo Data Store (Hugging Face Hub protocol under ``/v1/hf``); on v2 the Files service (filesets)."""

    service: ClassVar[str] = "datastore"

    hf_token: Optional[str] = Field(
        default=None,
        description="The Hugging Face Hub token (HF_TOKEN): registered for redaction only, never sent to the Data "
        "Store, which authenticates with `token`; a local HF login is never used either.",
    )

    def client(self) -> DataStoreClient:
        return DataStoreClient(
            self.url(),
            token=self.token or None,
            hf_token=self.hf_token or None,
            timeout=(self.connect_timeout_s, self.read_timeout_s),
        )


class EntityStoreResource(NemoServiceResource):
    """NeMo Entity Store: namespaces, datasets, models; on v2 the Entities (workspaces) and Models (model entities,
    providers) services."""

    service: ClassVar[str] = "entity-store"

    namespace: str = Field(default=DEFAULT_NAMESPACE, description="Namespace of every object this project creates.")

    def client(self) -> EntityStoreClient:
        return EntityStoreClient(self._http("entity-store"))


class CustomizerResource(NemoServiceResource):
    """NeMo Customizer: targets, configs, customization jobs; on v2 the customization service (automodel jobs)."""

    service: ClassVar[str] = "customizer"
    embedded_v2: ClassVar[bool] = True

    wandb_api_key: Optional[str] = Field(default=None, description="Weights & Biases key, sent as a header only.")

    def client(self) -> CustomizerClient:
        headers = {"wandb-api-key": self.wandb_api_key} if self.wandb_api_key else None
        return CustomizerClient(self._http("customizer", extra_headers=headers))


class DeploymentResource(NemoServiceResource):
    """NeMo Deployment Management: NIM deployments; on v2 the Models service's deployment configs and deployments."""

    service: ClassVar[str] = "deployment"
    embedded_v2: ClassVar[bool] = True

    def client(self) -> DeploymentClient:
        return DeploymentClient(self._http("deployment"))


class EvaluatorResource(NemoServiceResource):
    """NeMo Evaluator: retriever (BEIR) evaluation jobs. On the v2 profile (NeMo Platform / nemo-helix) also where
    the held-out set and the BEIR tasks are uploaded (filesets) and the NIMs are registered (gateway providers)."""

    service: ClassVar[str] = "evaluator"

    def client(self) -> EvaluatorClient:
        return EvaluatorClient(self._http("evaluator"))


class NimResource(NemoServiceResource):
    """NIM inference gateway (OpenAI-compatible embeddings); on v2 the inference gateway."""

    service: ClassVar[str] = "nim"

    def url(self) -> str:
        if self._resolved_url is None:
            # The local platform serves the NIM routes under its own prefix (NIM_URL != NEMO_URL, as on a cluster).
            self._resolved_url = (self.base_url or service_urls(local_platform_url())["NIM_URL"]).rstrip("/")
        return self._resolved_url

    def client(self) -> NimClient:
        return NimClient(self._http("nim"))

    def client_at(self, base_url: str) -> NimClient:
        """A NIM client of another OpenAI-compatible base with this resource's token and timeouts (v2: the
        inference gateway's route to one provider)."""
        return NimClient(
            ServiceHTTP(
                base_url,
                "nim",
                token=self.token or None,
                timeout=(self.connect_timeout_s, self.read_timeout_s),
                retries=self.retries,
            )
        )


def _env(name: str):
    """An ``EnvVar`` when the variable is set (so secrets stay out of the UI), else None (local defaults)."""
    return EnvVar(name) if os.environ.get(name) else None


def resources_from_env() -> dict[str, NemoServiceResource]:
    """The resource set of the code location, read from the environment at load time (see the module docstring).
    A service with no URL is the embedded platform on its v1 routes, whatever ``EMBED_FT_NEMO_API`` says: so a v2
    server set for the Evaluator alone (``NEMO_EVALUATOR_URL``) evaluates what the embedded platform trains."""
    api = os.environ.get(API_ENV) or DEFAULT_API
    # v2 is one platform behind one URL: the Files service and the gateway follow NEMO_URL unless set apart.
    platform = _env("NEMO_URL") if api.strip().lower() != "v1" else None

    def located(url: Any, token: Any) -> dict[str, Any]:
        return dict(base_url=url, token=token, api=api if url else DEFAULT_API)

    def nemo_service(url: Any, token: Any = None) -> dict[str, Any]:
        return located(url or _env("NEMO_URL"), token or _env("NEMO_TOKEN"))

    return {
        "datastore": DataStoreResource(
            **located(_env("NDS_URL") or platform, _env("NDS_TOKEN") or (platform and _env("NEMO_TOKEN"))),
            hf_token=_env("HF_TOKEN"),
        ),
        "entity_store": EntityStoreResource(
            **nemo_service(None), namespace=os.environ.get("NEMO_NAMESPACE") or DEFAULT_NAMESPACE
        ),
        "customizer": CustomizerResource(
            **nemo_service(_env("NEMO_CUSTOMIZER_URL")), wandb_api_key=_env("WANDB_API_KEY")
        ),
        "deployment": DeploymentResource(**nemo_service(_env("NEMO_DEPLOYMENT_URL"))),
        "evaluator": EvaluatorResource(**nemo_service(_env("NEMO_EVALUATOR_URL"), _env("NEMO_EVALUATOR_TOKEN"))),
        "nim": NimResource(
            **located(_env("NIM_URL") or platform, _env("NIM_TOKEN") or (platform and _env("NEMO_TOKEN")))
        ),
    }


def resources_for_url(base_url: str, namespace: str = DEFAULT_NAMESPACE, token: Optional[str] = None) -> dict:
    """All six resources of a local platform answering at ``base_url`` (one port serves every NeMo service; the NIM
    routes under its NIM_URL prefix)."""
    urls = service_urls(base_url)
    common: dict[str, Any] = dict(base_url=urls["NEMO_URL"], token=token)
    return {
        "datastore": DataStoreResource(base_url=urls["NDS_URL"], token=token),
        "entity_store": EntityStoreResource(**common, namespace=namespace),
        "customizer": CustomizerResource(**common),
        "deployment": DeploymentResource(**common),
        "evaluator": EvaluatorResource(**common),
        "nim": NimResource(base_url=urls["NIM_URL"], token=token),
    }


def resources_for_v2(platform_url: str, local_url: str, namespace: str = DEFAULT_NAMESPACE) -> dict:
    """The six resources on the v2 profile of this machine: the NeMo Platform (Helix) at ``platform_url`` for files,
    workspaces, models, the gateway and evaluation; the embedded platform's v2 routes at ``local_url`` for
    customization and deployments (what `embed-ft run --backend helix` sets through the environment)."""
    helix: dict[str, Any] = dict(base_url=platform_url, api="v2")
    local: dict[str, Any] = dict(base_url=local_url, api="v2")
    return {
        "datastore": DataStoreResource(**helix),
        "entity_store": EntityStoreResource(**helix, namespace=namespace),
        "customizer": CustomizerResource(**local),
        "deployment": DeploymentResource(**local),
        "evaluator": EvaluatorResource(**helix),
        "nim": NimResource(**helix),
    }
