"""The backend profile table: every default that depends on where a run trains, serves and evaluates, defined once.

A profile is the starting point of an experiment spec (`spec/experiment.py`): `default_spec(profile)` fills each
backend-dependent field from it, and a preset (`spec/presets.py`) changes named fields on top. The local platform's
own server-side defaults (`platform/api/customizer.py`) and its default customization target
(`platform/services/model_weights.py`) are the ``local`` row; the NeMo v1 clients take every value explicitly.
This module is the lowest layer (stdlib only), so the clients, the platform and the spec can all read it.

Rows: ``local`` (the embedded platform, NeMo v1 routes), ``nemo`` (a NeMo Microservices v1 cluster), ``local-v2``
(this machine on the NeMo Platform v2 API: Helix for files, models, gateway and evaluation, the embedded platform's
v2 routes for CPU training and serving) and ``nemo-v2`` (a NeMo Platform v2 cluster). ``api`` says which clients
the assets use (`embed_ft/nemo/` or `embed_ft/nemo/v2/`); it is chosen by configuration (``EMBED_FT_NEMO_API``).

Adding a profile:

1. add one ``BackendProfile(...)`` row below and list it in ``PROFILES`` (its ``name`` is what a stored spec
   records in ``spec.profile``, so keep it stable);
2. make ``profile_for_backend`` (or the caller that probes the backend) return it where it applies;
3. nothing else: the spec, the presets, the CLI options and their ``--help`` defaults follow from the table.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

ApiGeneration = Literal["v1", "v2"]


@dataclass(frozen=True)
class BackendProfile:
    name: str
    description: str
    api: ApiGeneration  # the NeMo API generation the assets speak (v1: NeMo Microservices 25.x; v2: NeMo Platform)
    target: str  # customization target `namespace/name@version`
    base_model: str  # the model the baseline NIM serves
    batch_size: int
    learning_rate: float
    max_seq_length: int  # training inputs are truncated to this many tokens
    eval_tasks: tuple[str, ...]  # BEIR tasks as files_url
    nim_image: str
    nim_tag: str
    training_timeout_s: float
    deployment_timeout_s: float
    evaluation_timeout_s: float


NEMO_V1 = BackendProfile(
    name="nemo",
    description="a NeMo Microservices v1 cluster: the tutorial's values",
    api="v1",
    target="nvidia/llama-3.2-nv-embedqa-1b@v2",
    base_model="nvidia/llama-3.2-nv-embedqa-1b-v2",
    batch_size=256,
    learning_rate=5e-6,
    max_seq_length=2048,
    eval_tasks=("file://scidocs/",),
    nim_image="nvcr.io/nim/nvidia/llama-3.2-nv-embedqa-1b-v2",
    nim_tag="1.6.0",
    training_timeout_s=4 * 3600,
    deployment_timeout_s=45 * 60,
    evaluation_timeout_s=3 * 3600,
)

# all-MiniLM-L6-v2 on 2 CPU cores: smaller batches and a higher learning rate so that one short epoch
# moves the model measurably (the tutorial's rate over a handful of steps changes almost nothing).
LOCAL = BackendProfile(
    name="local",
    description="the embedded local platform: the packaged all-MiniLM-L6-v2 on CPU",
    api="v1",
    target="sentence-transformers/all-minilm-l6-v2@v1",
    base_model="sentence-transformers/all-MiniLM-L6-v2",
    batch_size=32,
    learning_rate=2e-5,
    max_seq_length=256,
    eval_tasks=("file://scifact/",),
    nim_image=NEMO_V1.nim_image,  # accepted and ignored by the local platform
    nim_tag=NEMO_V1.nim_tag,
    training_timeout_s=2 * 3600,
    deployment_timeout_s=10 * 60,
    evaluation_timeout_s=2 * 3600,
)

# NeMo Platform v2 on this machine: the embedded platform trains and serves (behind the v2 customization and
# deployment routes), so its training values are the local ones; Helix stores, routes and evaluates.
LOCAL_V2 = replace(
    LOCAL,
    name="local-v2",
    description="NeMo Platform v2 on this machine: Helix (files, models, gateway, evaluation) and the embedded "
    "platform's v2 routes (all-MiniLM-L6-v2 trained and served on CPU)",
    api="v2",
)

# A NeMo Platform v2 cluster (26.x): the tutorial's values; the customization target is the base model's model
# entity `workspace/name` (with a fileset, as the automodel job requires), in the workspace NVIDIA's v2 docs use.
NEMO_V2 = replace(
    NEMO_V1,
    name="nemo-v2",
    description="a NeMo Platform v2 cluster (26.x): the tutorial's values, the base model as a model entity",
    api="v2",
    target="default/llama-3.2-nv-embedqa-1b-v2",
)

PROFILES: dict[str, BackendProfile] = {profile.name: profile for profile in (LOCAL, NEMO_V1, LOCAL_V2, NEMO_V2)}


def profile_for_backend(uses_local_platform: bool, api: ApiGeneration = "v1") -> BackendProfile:
    """The profile of the backend the resources point at: where training runs (the local platform answers its own
    `/health`) and which API generation the resources speak."""
    if api == "v2":
        return LOCAL_V2 if uses_local_platform else NEMO_V2
    return LOCAL if uses_local_platform else NEMO_V1


def get_profile(name: str) -> BackendProfile:
    """The profile called ``name``; ValueError naming the known ones."""
    try:
        return PROFILES[name]
    except KeyError:
        raise ValueError(f"unknown backend profile {name!r}; known: {', '.join(PROFILES)}") from None
