"""One Dagster resource per NeMo service, each a thin shell over its client in ``embed_ft.nemo``.

Configuration comes from the environment (the tutorial's names): ``NDS_URL`` (Data Store), ``NEMO_URL``
(Entity Store, Customizer, Deployment Management, Evaluator), ``NIM_URL`` (NIM gateway), optional bearer tokens
``NDS_TOKEN``/``NEMO_TOKEN``/``NIM_TOKEN``, ``HF_TOKEN``, ``WANDB_API_KEY`` and ``NEMO_NAMESPACE``. When a URL is
not set, the resource points at the embedded local platform, started on demand (``launcher.ensure_running``).
"""

from __future__ import annotations

import os
from typing import Any, Optional

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
LOCAL_PLATFORM_SERVICE = "embed-ft-local-platform"


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

    _resolved_url: Optional[str] = PrivateAttr(default=None)
    _is_local: Optional[bool] = PrivateAttr(default=None)

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
    """NeMo Data Store (Hugging Face Hub protocol under ``/v1/hf``)."""

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
    """NeMo Entity Store: namespaces, datasets, models."""

    namespace: str = Field(default=DEFAULT_NAMESPACE, description="Namespace of every object this project creates.")

    def client(self) -> EntityStoreClient:
        return EntityStoreClient(self._http("entity-store"))


class CustomizerResource(NemoServiceResource):
    """NeMo Customizer: targets, configs, customization jobs."""

    wandb_api_key: Optional[str] = Field(default=None, description="Weights & Biases key, sent as a header only.")

    def client(self) -> CustomizerClient:
        headers = {"wandb-api-key": self.wandb_api_key} if self.wandb_api_key else None
        return CustomizerClient(self._http("customizer", extra_headers=headers))


class DeploymentResource(NemoServiceResource):
    """NeMo Deployment Management: NIM deployments."""

    def client(self) -> DeploymentClient:
        return DeploymentClient(self._http("deployment"))


class EvaluatorResource(NemoServiceResource):
    """NeMo Evaluator: retriever (BEIR) evaluation jobs. On the v2 profile (NeMo Platform / nemo-helix) also where
    the held-out set and the BEIR tasks are uploaded (filesets) and the NIMs are registered (gateway providers)."""

    api: str = Field(
        default="v1",
        description="NeMo API generation of base_url: v1 (NeMo Microservices 25.x), v2 (NeMo Platform 26.x / "
        "nemo-helix) or auto (probe once, log what was found).",
    )

    _profile: Optional[str] = PrivateAttr(default=None)

    def api_profile(self) -> Profile:
        if self._profile is None:
            if not self.base_url and self.api.strip().lower() == "v2":
                raise ValueError(
                    "EMBED_FT_NEMO_API=v2 needs the v2 server's URL in NEMO_EVALUATOR_URL (or NEMO_URL):"
                    " the embedded local platform speaks v1"
                )
            self._profile = resolve(self.api, self.url() if self.base_url else None)
        return self._profile  # type: ignore[return-value]

    def http(self) -> ServiceHTTP:
        return self._http("evaluator")

    def client(self) -> EvaluatorClient:
        return EvaluatorClient(self._http("evaluator"))


class NimResource(NemoServiceResource):
    """NIM inference gateway (OpenAI-compatible embeddings)."""

    def url(self) -> str:
        if self._resolved_url is None:
            # The local platform serves the NIM routes under its own prefix (NIM_URL != NEMO_URL, as on a cluster).
            self._resolved_url = (self.base_url or service_urls(local_platform_url())["NIM_URL"]).rstrip("/")
        return self._resolved_url

    def client(self) -> NimClient:
        return NimClient(self._http("nim"))


def _env(name: str):
    """An ``EnvVar`` when the variable is set (so secrets stay out of the UI), else None (local defaults)."""
    return EnvVar(name) if os.environ.get(name) else None


def resources_from_env() -> dict[str, NemoServiceResource]:
    """The resource set of the code location, read from the environment at load time."""
    nemo = dict(base_url=_env("NEMO_URL"), token=_env("NEMO_TOKEN"))
    return {
        "datastore": DataStoreResource(base_url=_env("NDS_URL"), token=_env("NDS_TOKEN"), hf_token=_env("HF_TOKEN")),
        "entity_store": EntityStoreResource(**nemo, namespace=os.environ.get("NEMO_NAMESPACE") or DEFAULT_NAMESPACE),
        "customizer": CustomizerResource(**nemo, wandb_api_key=_env("WANDB_API_KEY")),
        "deployment": DeploymentResource(**nemo),
        # The Evaluator may live elsewhere: a NeMo Platform v2 server (NEMO_EVALUATOR_URL, EMBED_FT_NEMO_API=v2)
        # evaluates NIMs that Customizer and Deployment Management (NEMO_URL; the local platform) trained and serve.
        "evaluator": EvaluatorResource(
            base_url=_env("NEMO_EVALUATOR_URL") or _env("NEMO_URL"),
            token=_env("NEMO_EVALUATOR_TOKEN") or _env("NEMO_TOKEN"),
            api=os.environ.get("EMBED_FT_NEMO_API") or "v1",
        ),
        "nim": NimResource(base_url=_env("NIM_URL"), token=_env("NIM_TOKEN")),
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
