"""Conformance of the local platform to NVIDIA's official Python SDK (``nemo-microservices`` 1.5.0), over real HTTP.

Code written against a NeMo cluster must run unchanged on the local platform (issue 12). The SDK is the oracle: it
is constructed as a cluster user constructs it (``base_url`` = NEMO_URL, ``inference_base_url`` = NIM_URL) and sends
its own wire format (bracket-nested ``filter[...]``/``search[...]``, ``sort``, ``page``/``page_size``). The flows run
the SDK as users run it (lenient parsing); ``test_response_parses_strictly_into_the_sdk_model`` then parses one
answer of every call strictly into the SDK's pydantic models (``_strict_response_validation``: required fields,
literal values, JSON bodies). It is a test-only dependency.

Also here:
- our own request bodies (the builders of ``embed_ft.nemo`` and the bodies our clients actually send) checked
  against the SDK's parameter ``TypedDict``s: value types, required keys, and keys the SDK does not define;
- the five mismatches of issue 12, one test each (``test_mismatch_*``): they fail until the issue is fixed.

One platform serves the module (its own home and BEIR root); the > 2,000-jobs test starts a second one.
"""

from __future__ import annotations

import logging
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import requests
from nemo_microservices import ConflictError, NotFoundError, UnprocessableEntityError
from nemo_microservices.types import (
    dataset_create_params,
    embedding_create_params,
    model_create_params,
    namespace_create_params,
)
from nemo_microservices.types.customization import (
    config_create_params as cust_config_params,
    job_create_params as cust_job_params,
)
from nemo_microservices.types.deployment import model_deployment_create_params
from nemo_microservices.types.evaluation import (
    config_create_params as eval_config_params,
    job_create_params as eval_job_params,
    target_create_params as eval_target_params,
)

from embed_ft.nemo import (
    CustomizerClient,
    DeploymentClient,
    EntityStoreClient,
    EvaluatorClient,
    NimClient,
    ServiceHTTP,
    beir_task,
    nim_deployment_body,
    parse_metrics,
    retriever_config,
    retriever_target,
    sft_config_body,
    sft_job_body,
)
from embed_ft.nemo.customizer import IDEMPOTENCY_FIELD, with_idempotency_key
from embed_ft_tests.platform_customizer_helpers import jsonl, make_triplets, upload_dataset, wait_for
from embed_ft_tests.platform_server import running_platform
from embed_ft_tests.sdk_helpers import (
    RecordedCalls,
    check_body,
    nim_url_of,
    sdk_client,
    stalling_endpoint,
    write_beir,
)

BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"  # the bundled base model (Entity Store model and NIM name)
DEFAULT_TARGET = "sentence-transformers/all-minilm-l6-v2@v1"  # the platform's default customization target
LORA = {"adapter_dim": 8, "alpha": 16, "adapter_dropout": 0.05, "target_modules": ["query", "value"]}
JOB_TERMINAL = ("completed", "failed", "cancelled")
NIM = nim_deployment_body(image_name="nvcr.io/nim/nvidia/llama-3.2-nv-embedqa-1b-v2", image_tag="1.6.0")
TIMEOUT = (5, 60)


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --------------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    root = tmp_path_factory.mktemp("sdk-conformance")
    write_beir(root / "beir" / "tiny")
    with running_platform(root, beir_root=root / "beir") as (base_url, settings):
        yield SimpleNamespace(base=base_url, nim=nim_url_of(settings), settings=settings, root=root)


@pytest.fixture(scope="module")
def sdk_and_log(platform):
    client, sent = sdk_client(platform.base, platform.nim)
    yield client, sent
    client.close()


@pytest.fixture
def sdk(sdk_and_log):
    return sdk_and_log[0]


@pytest.fixture(scope="module")
def strict_sdk(platform):
    client, _ = sdk_client(platform.base, platform.nim, strict=True)
    yield client
    client.close()


@pytest.fixture
def sent(sdk_and_log):
    log = sdk_and_log[1]
    log.clear()
    return log


@pytest.fixture(scope="module")
def served_base(sdk_and_log):
    """The bundled base model deployed through the SDK and listed by the NIM: its served (unversioned) name."""
    sdk = sdk_and_log[0]
    sdk.namespaces.create(id="sdk-deploy")
    sdk.deployment.model_deployments.create(
        name="sdk-base", namespace="sdk-deploy", config={"model": BASE_MODEL, "nim_deployment": NIM}
    )
    wait_for(
        lambda: (
            sdk.deployment.model_deployments.retrieve("sdk-base", namespace="sdk-deploy").status_details.status
            in ("ready", "failed")
        ),
        120,
        "deployment sdk-deploy/sdk-base to settle",
    )
    doc = sdk.deployment.model_deployments.retrieve("sdk-base", namespace="sdk-deploy")
    assert doc.status_details.status == "ready", doc
    wait_for(lambda: BASE_MODEL in [m.id for m in sdk.inference.models.list().data], 60, "the NIM to list the model")
    return BASE_MODEL


@pytest.fixture(scope="module")
def eval_refs(sdk_and_log, platform, served_base):
    """An evaluation config (tiny BEIR set) and a retriever target (the served base model), created with the SDK."""
    sdk = sdk_and_log[0]
    sdk.namespaces.create(id="sdk-eval")
    config = {"name": "sdk-tiny", **retriever_config("sdk-eval", beir_task("file://tiny/", name="tiny"))}
    target = {"name": "sdk-base", "namespace": "sdk-eval", **retriever_target(platform.nim, served_base, top_k=5)}
    sdk.evaluation.configs.create(**config)
    sdk.evaluation.targets.create(**target)
    return SimpleNamespace(
        config="sdk-eval/sdk-tiny", target="sdk-eval/sdk-base", config_body=config, target_body=target
    )


def _wait_eval(sdk, job_id: str, timeout_s: float = 90) -> Any:
    return wait_for(
        lambda: (j := sdk.evaluation.jobs.retrieve(job_id)).status in JOB_TERMINAL and j,
        timeout_s,
        f"evaluation job {job_id} to end",
    )


@pytest.fixture(scope="module")
def completed_eval_job(sdk_and_log, eval_refs):
    sdk = sdk_and_log[0]
    job = sdk.evaluation.jobs.create(
        config=eval_refs.config,
        target=eval_refs.target,
        namespace="sdk-eval",
        custom_fields={"suite": "sdk", "run": "reference"},
    )
    done = _wait_eval(sdk, job.id)
    assert done.status == "completed", done.status_details
    return done


@pytest.fixture(scope="module")
def cust_dataset(sdk_and_log, platform):
    """A tiny triplet dataset in the Data Store (huggingface_hub) registered in the Entity Store, and a config."""
    sdk = sdk_and_log[0]
    upload_dataset(
        platform.base, "sdk-cust", "triplets", jsonl(make_triplets(16)), jsonl(make_triplets(4, 100)), platform.root
    )
    sdk.customization.configs.create(
        **sft_config_body("sdk-sft@v1", "sdk-cust", DEFAULT_TARGET, micro_batch_size=8, max_seq_length=64)
    )
    return SimpleNamespace(namespace="sdk-cust", name="triplets", config="sdk-cust/sdk-sft@v1")


def _failing_eval_body(config_namespace: str, nim_url: str, **extra: Any) -> dict:
    """An evaluation job on a Data Store dataset that does not exist: created at once, fails at once."""
    ns = config_namespace
    return {
        "config": retriever_config(ns, beir_task(f"hf://datasets/{ns}/no-such-set", name="missing")),
        "target": retriever_target(nim_url, BASE_MODEL, top_k=5),
        **extra,
    }


# --------------------------------------------------------------------------------------------------- namespaces


def test_namespaces_create_get_list_paginate_delete(sdk, sent):
    names = [f"sdk-ns-{i}" for i in range(5)]
    for i, name in enumerate(names):
        created = sdk.namespaces.create(id=name, description=f"namespace {i}", custom_fields={"suite": "sdk"})
        assert created.id == name
        assert created.created_at is not None
    with pytest.raises(ConflictError):
        sdk.namespaces.create(id=names[0])
    got = sdk.namespaces.retrieve(names[2])
    assert got.id == names[2]
    assert got.description == "namespace 2"
    assert got.custom_fields == {"suite": "sdk"}

    first = sdk.namespaces.list(page=1, page_size=2, sort="created_at")
    assert first.pagination.page == 1
    assert first.pagination.page_size == 2
    assert first.pagination.current_page_size == 2
    assert first.pagination.total_results >= 5
    assert first.pagination.total_pages == -(-first.pagination.total_results // 2)
    assert first.sort == "created_at"
    everything = [n.id for n in first]  # iterating a page follows pagination: page 2, 3, ... until a page is empty
    assert [n for n in everything if n in names] == names  # oldest first
    assert len(everything) == first.pagination.total_results
    newest_first = [n.id for n in sdk.namespaces.list(sort="-created_at", page_size=100).data]
    assert [n for n in newest_first if n in names] == names[::-1]
    assert "page=1&page_size=2&sort=created_at" in sent.queries("/v1/namespaces")[0]

    sdk.namespaces.delete(names[4])
    with pytest.raises(NotFoundError):
        sdk.namespaces.retrieve(names[4])


# --------------------------------------------------------------------------------------------------- datasets


def test_datasets_create_get_list_filter_sort_delete(sdk):
    ns = "sdk-data"
    sdk.namespaces.create(id=ns)
    for name in ("set-beta", "set-alpha", "set-gamma"):
        created = sdk.datasets.create(
            name=name,
            namespace=ns,
            files_url=f"hf://datasets/{ns}/{name}",
            description=f"{name} triplets",
            custom_fields={"owner": name},
        )
        assert created.name == name
        assert created.files_url == f"hf://datasets/{ns}/{name}"
    with pytest.raises(ConflictError):
        sdk.datasets.create(name="set-beta", namespace=ns, files_url=f"hf://datasets/{ns}/set-beta")

    by_name = sdk.datasets.list(filter={"namespace": ns}, sort="name")
    assert [d.name for d in by_name.data] == ["set-alpha", "set-beta", "set-gamma"]
    assert by_name.pagination.total_results == 3
    assert [d.name for d in sdk.datasets.list(filter={"namespace": ns}, sort="-name").data] == [
        "set-gamma",
        "set-beta",
        "set-alpha",
    ]
    second = sdk.datasets.list(filter={"namespace": ns}, sort="name", page=2, page_size=2)
    assert [d.name for d in second.data] == ["set-gamma"]
    assert (second.pagination.page, second.pagination.total_pages, second.pagination.current_page_size) == (2, 2, 1)

    got = sdk.datasets.retrieve("set-alpha", namespace=ns)
    assert got.namespace == ns
    assert got.description == "set-alpha triplets"
    assert got.custom_fields == {"owner": "set-alpha"}
    sdk.datasets.delete("set-alpha", namespace=ns)
    with pytest.raises(NotFoundError):
        sdk.datasets.retrieve("set-alpha", namespace=ns)


# --------------------------------------------------------------------------------------------------- models


def test_mismatch_models_list_without_parameters_is_the_entity_store(sdk, sent, platform):
    """Issue 12, mismatch 1: ``client.models.list()`` (no parameters) must list the Entity Store's models, not the
    NIM's served models (the Entity Store lives at NEMO_URL, the NIM at NIM_URL)."""
    listed = sdk.models.list()
    names = [f"{m.namespace}/{m.name}" for m in listed.data]
    assert BASE_MODEL in names, (
        f"GET {platform.base}/v1/models without parameters answered {listed.to_dict()!r}: not the Entity Store's "
        f"model list (which holds {BASE_MODEL})"
    )
    assert listed.pagination is not None
    assert listed.pagination.total_results >= 1
    assert sent.queries("/v1/models") == [""]


def test_models_create_get_list_filter_sort_paginate_delete(sdk):
    ns = "sdk-models"
    sdk.namespaces.create(id=ns)
    for name, peft in (("m-beta", None), ("m-alpha", {"finetuning_type": "lora"}), ("m-gamma", None)):
        body: dict[str, Any] = {
            "name": name,
            "namespace": ns,
            "base_model": BASE_MODEL,
            "description": f"model {name}",
            "custom_fields": {"tier": name},
        }
        if peft:
            body["peft"] = peft
        assert check_body(model_create_params.ModelCreateParams, body) == []
        created = sdk.models.create(**body)
        assert created.name == name
        assert created.namespace == ns
        assert created.base_model == BASE_MODEL
    with pytest.raises(ConflictError):
        sdk.models.create(name="m-beta", namespace=ns)

    listed = sdk.models.list(filter={"namespace": ns}, sort="name")
    assert [m.name for m in listed.data] == ["m-alpha", "m-beta", "m-gamma"]
    assert listed.pagination.total_results == 3
    newest_name_first = sdk.models.list(filter={"namespace": ns}, sort="-name")
    assert [m.name for m in newest_name_first.data] == ["m-gamma", "m-beta", "m-alpha"]
    page = sdk.models.list(filter={"namespace": ns}, sort="name", page_size=2)
    assert [m.name for m in page] == ["m-alpha", "m-beta", "m-gamma"]
    assert sdk.models.retrieve("m-alpha", namespace=ns).peft.finetuning_type == "lora"
    sdk.models.delete("m-gamma", namespace=ns)
    with pytest.raises(NotFoundError):
        sdk.models.retrieve("m-gamma", namespace=ns)


def test_models_nested_filter_uses_bracket_nesting(sdk, sent):
    """``filter={"peft": {"finetuning_type": "lora"}}`` goes out as ``filter[peft][finetuning_type]=lora``."""
    ns = "sdk-models-peft"
    sdk.namespaces.create(id=ns)
    sdk.models.create(name="adapter", namespace=ns, base_model=BASE_MODEL, peft={"finetuning_type": "lora"})
    sdk.models.create(name="full", namespace=ns, base_model=BASE_MODEL, peft={"finetuning_type": "all_weights"})
    sent.clear()
    listed = sdk.models.list(filter={"namespace": ns, "peft": {"finetuning_type": "lora"}})
    assert "filter[peft][finetuning_type]=lora" in sent.queries("/v1/models")[0]
    assert [m.name for m in listed.data] == ["adapter"], listed.to_dict()


# --------------------------------------------------------------------------------------------------- search


@pytest.mark.parametrize("resource", ["namespaces", "datasets", "models"])
def test_search_is_substring_matching(sdk, sent, resource):
    """``search[name]=x`` (``search[id]`` for namespaces) keeps the entities whose field contains ``x``."""
    ns = _unique("sdk-search")
    sdk.namespaces.create(id=ns)
    tag = uuid.uuid4().hex[:6]
    if resource == "namespaces":
        for suffix in ("red", "blue"):
            sdk.namespaces.create(id=f"srch-{tag}-{suffix}")
        found = sdk.namespaces.list(search={"id": f"{tag}-re"}, page_size=100)
        assert [n.id for n in found.data] == [f"srch-{tag}-red"], found.to_dict()
    elif resource == "datasets":
        for suffix in ("red", "blue"):
            sdk.datasets.create(name=f"{tag}-{suffix}", namespace=ns, files_url=f"hf://datasets/{ns}/{tag}-{suffix}")
        found = sdk.datasets.list(search={"name": f"{tag}-bl"}, page_size=100)
        assert [d.name for d in found.data] == [f"{tag}-blue"], found.to_dict()
    else:
        for suffix in ("red", "blue"):
            sdk.models.create(name=f"{tag}-{suffix}", namespace=ns, base_model=BASE_MODEL)
        found = sdk.models.list(search={"name": f"{tag}-re"}, page_size=100)
        assert [m.name for m in found.data] == [f"{tag}-red"], found.to_dict()
    assert any(q.startswith("search[") for q in sent.queries(f"/v1/{resource}")[-1].split("&"))


# --------------------------------------------------------------------------------------------------- customization


def test_customization_targets_list_get_create_update_delete(sdk, platform):
    listed = sdk.customization.targets.list(filter={"namespace": "sentence-transformers"})
    default = next(t for t in listed.data if f"{t.namespace}/{t.name}" == DEFAULT_TARGET)
    assert default.base_model == BASE_MODEL
    assert default.enabled is True
    assert default.status == "ready"
    got = sdk.customization.targets.retrieve(default.name, namespace=default.namespace)
    assert got.model_path == default.model_path
    assert got.num_parameters > 0

    ns = "sdk-targets"
    created = sdk.customization.targets.create(
        name="minilm-copy@v1",
        namespace=ns,
        base_model=BASE_MODEL,
        model_uri=Path(default.model_path).as_uri(),
        num_parameters=default.num_parameters,
        precision="fp32",
    )
    assert created.status == "ready"
    assert created.enabled is True
    with pytest.raises(ConflictError):
        sdk.customization.targets.create(
            name="minilm-copy@v1",
            namespace=ns,
            num_parameters=1,
            precision="fp32",
            model_uri=Path(default.model_path).as_uri(),
        )
    updated = sdk.customization.targets.update("minilm-copy@v1", namespace=ns, enabled=False, description="off")
    assert updated.enabled is False
    assert updated.description == "off"
    assert [t.name for t in sdk.customization.targets.list(filter={"namespace": ns}).data] == ["minilm-copy@v1"]
    sdk.customization.targets.delete("minilm-copy@v1", namespace=ns)
    with pytest.raises(NotFoundError):
        sdk.customization.targets.retrieve("minilm-copy@v1", namespace=ns)


def test_customization_configs_from_our_builder(sdk):
    ns = "sdk-configs"
    body = sft_config_body("tutorial@v1", ns, DEFAULT_TARGET, micro_batch_size=8, max_seq_length=64)
    assert check_body(cust_config_params.ConfigCreateParams, body) == []
    created = sdk.customization.configs.create(**body)
    assert created.name == "tutorial@v1"
    assert created.namespace == ns
    option = created.training_options[0]
    assert (option.training_type, option.finetuning_type, option.micro_batch_size) == ("sft", "all_weights", 8)
    with pytest.raises(ConflictError):
        sdk.customization.configs.create(**body)
    sdk.customization.configs.create(**{**body, "name": "second@v1"})

    listed = sdk.customization.configs.list(filter={"namespace": ns}, sort="-created_at")
    assert [c.name for c in listed.data] == ["second@v1", "tutorial@v1"]
    got = sdk.customization.configs.retrieve("tutorial@v1", namespace=ns)
    assert got.max_seq_length == 64
    assert got.training_precision == "bf16"
    sdk.customization.configs.delete("second@v1", namespace=ns)
    with pytest.raises(NotFoundError):
        sdk.customization.configs.retrieve("second@v1", namespace=ns)


@pytest.fixture(scope="module")
def cust_job(sdk_and_log, cust_dataset):
    """A customization job submitted with the SDK from our builder's body. It is cancelled, not trained: training
    takes a minute on 2 busy cores and is covered by test_platform_customizer.py."""
    sdk = sdk_and_log[0]
    body = with_idempotency_key(
        sft_job_body(
            "sdk-tiny",
            cust_dataset.config,
            cust_dataset.namespace,
            cust_dataset.name,
            f"{cust_dataset.namespace}/sdk-tuned",
            batch_size=8,
            learning_rate=5e-5,
            extra_hyperparameters={"max_steps": 2},
        ),
        "sdk-key-1",
    )
    assert check_body(cust_job_params.JobCreateParams, body) == []
    job = sdk.customization.jobs.create(**body)
    yield job
    if sdk.customization.jobs.retrieve(job.id).status not in JOB_TERMINAL:
        sdk.customization.jobs.cancel(job.id)


def test_customization_job_create_get_status_list_cancel(sdk, cust_job, cust_dataset):
    job, ns = cust_job, cust_dataset.namespace
    assert job.id.startswith("cust-")
    assert job.status in ("created", "pending", "running")
    assert job.output_model == f"{ns}/sdk-tuned@{job.id}"
    assert job.custom_fields == {IDEMPOTENCY_FIELD: "sdk-key-1"}
    got = sdk.customization.jobs.retrieve(job.id)
    assert got.hyperparameters.finetuning_type == "all_weights"
    assert got.hyperparameters.max_steps == 2
    assert got.hyperparameters.batch_size == 8
    assert got.hyperparameters.learning_rate == 5e-5
    status = sdk.customization.jobs.status(job.id)
    assert status.status in ("created", "pending", "running")
    assert status.percentage_done is not None
    assert job.id in [j.id for j in sdk.customization.jobs.list(filter={"namespace": ns}).data]

    cancelled = sdk.customization.jobs.cancel(job.id)
    assert cancelled.id == job.id
    assert cancelled.status in ("cancelling", "cancelled")
    final = wait_for(
        lambda: (s := sdk.customization.jobs.status(job.id)).status in JOB_TERMINAL and s,
        60,
        f"customization job {job.id} to stop",
    )
    assert final.status == "cancelled", final.status_logs
    in_status = sdk.customization.jobs.list(filter={"namespace": ns, "status": "cancelled"}, page_size=100)
    assert job.id in [j.id for j in in_status.data]
    assert all(j.status == "cancelled" and j.namespace == ns for j in in_status.data)
    assert job.id not in [j.id for j in sdk.customization.jobs.list(filter={"status": "running"}, page_size=100).data]
    with pytest.raises(ConflictError):  # a job that ended cannot be cancelled again
        sdk.customization.jobs.cancel(job.id)
    assert sdk.customization.jobs.container_logs(job.id) is not None


def test_mismatch_p_tuning_is_refused_with_422(platform, cust_dataset):
    """Issue 12, mismatch 4 (1/2): SDK 1.5's fine-tuning types are ``lora``, ``lora_merged``, ``all_weights``;
    ``p_tuning`` is refused with 422, for a config's training option and for a job's hyperparameters."""
    # Our builders refuse p_tuning themselves (the v1 contract's models): the bodies are edited after building.
    config = sft_config_body("ptuning@v1", "sdk-cust", DEFAULT_TARGET)
    config["training_options"][0]["finetuning_type"] = "p_tuning"
    response = requests.post(f"{platform.base}/v1/customization/configs", json=config, timeout=TIMEOUT)
    assert response.status_code == 422, f"config with finetuning_type p_tuning: {response.status_code} {response.text}"
    job = sft_job_body(
        "ptuning",
        cust_dataset.config,
        cust_dataset.namespace,
        cust_dataset.name,
        f"{cust_dataset.namespace}/ptuned",
    )
    job["hyperparameters"]["finetuning_type"] = "p_tuning"
    response = requests.post(f"{platform.base}/v1/customization/jobs", json=job, timeout=TIMEOUT)
    assert response.status_code == 422, response.text
    assert "finetuning_type" in response.text, response.text


@pytest.mark.parametrize("finetuning_type", ["lora", "lora_merged", "all_weights"])
def test_mismatch_sdk_finetuning_types_are_accepted(sdk, cust_dataset, finetuning_type):
    """Issue 12, mismatch 4 (2/2): each SDK 1.5 fine-tuning type is accepted, with the SDK's ``lora`` parameters
    (``adapter_dim``, ``alpha``, ``adapter_dropout``, ``target_modules``) for the LoRA types."""
    ns = cust_dataset.namespace
    config_name = f"ft-{finetuning_type.replace('_', '-')}@v1"
    config = sdk.customization.configs.create(
        **sft_config_body(config_name, ns, DEFAULT_TARGET, finetuning_type=finetuning_type, max_seq_length=64)
    )
    assert config.training_options[0].finetuning_type == finetuning_type
    extra = {"lora": dict(LORA)} if finetuning_type != "all_weights" else {}
    body = sft_job_body(
        f"ft-{finetuning_type}",
        f"{ns}/{config_name}",
        ns,
        cust_dataset.name,
        f"{ns}/ft-{finetuning_type.replace('_', '-')}",
        finetuning_type=finetuning_type,
        batch_size=8,
        extra_hyperparameters=extra,
    )
    assert check_body(cust_job_params.JobCreateParams, body) == []
    try:
        job = sdk.customization.jobs.create(**body)
    except UnprocessableEntityError as exc:
        pytest.fail(f"finetuning_type {finetuning_type!r} refused: {exc.response.status_code} {exc.body}")
    try:
        assert job.hyperparameters.finetuning_type == finetuning_type
        if extra:
            assert job.hyperparameters.lora.adapter_dim == LORA["adapter_dim"]
            assert job.hyperparameters.lora.alpha == LORA["alpha"]
            assert job.hyperparameters.lora.adapter_dropout == LORA["adapter_dropout"]
            assert list(job.hyperparameters.lora.target_modules) == LORA["target_modules"]
    finally:
        sdk.customization.jobs.cancel(job.id)  # not trained here: the type's acceptance is the point


# --------------------------------------------------------------------------------------------------- deployment


def test_model_deployments_create_list_get_delete(sdk, served_base):
    listed = sdk.deployment.model_deployments.list(page_size=100)
    assert ("sdk-deploy", "sdk-base") in [(d.namespace, d.name) for d in listed.data]
    base = sdk.deployment.model_deployments.retrieve("sdk-base", namespace="sdk-deploy")
    assert base.status_details.status == "ready"
    assert base.deployed is True
    assert base.url
    assert base.models == [BASE_MODEL]

    created = sdk.deployment.model_deployments.create(
        name="sdk-temp", namespace="sdk-deploy", config={"model": BASE_MODEL, "nim_deployment": NIM}
    )
    assert created.status_details.status in ("pending", "ready")
    wait_for(
        lambda: (
            sdk.deployment.model_deployments.retrieve("sdk-temp", namespace="sdk-deploy").status_details.status
            == "ready"
        ),
        120,
        "deployment sdk-deploy/sdk-temp to be ready",
    )
    deleted = sdk.deployment.model_deployments.delete("sdk-temp", namespace="sdk-deploy")
    assert deleted is not None
    with pytest.raises(NotFoundError):
        sdk.deployment.model_deployments.retrieve("sdk-temp", namespace="sdk-deploy")
    # the other deployment of the same model still serves it
    assert served_base in [m.id for m in sdk.inference.models.list().data]


# --------------------------------------------------------------------------------------------------- inference


def test_inference_models_and_embeddings_at_the_nim_base(sdk, sent, platform, served_base):
    served = sdk.inference.models.list()
    assert served_base in [m.id for m in served.data]
    assert all(m.owned_by for m in served.data)
    one = sdk.embeddings.create(input="protein folding", model=served_base, input_type="query")
    assert len(one.data) == 1
    assert len(one.data[0].embedding) == 384
    assert one.data[0].index == 0
    many = sdk.embeddings.create(
        input=["a passage", "another passage"],
        model=served_base,
        input_type="passage",
        truncate="END",
        encoding_format="float",
    )
    assert [e.index for e in many.data] == [0, 1]
    assert many.model == served_base
    assert many.usage.prompt_tokens > 0
    nim_calls = [url for method, url in sent if url.endswith(("/v1/embeddings", "/v1/models"))]
    assert nim_calls
    assert all(url.startswith(platform.nim + "/") for url in nim_calls)


# --------------------------------------------------------------------------------------------------- evaluation


def test_evaluation_configs_and_targets_create_get_list_delete(sdk, eval_refs):
    assert check_body(eval_config_params.ConfigCreateParams, eval_refs.config_body) == []
    assert check_body(eval_target_params.TargetCreateParams, eval_refs.target_body) == []
    config = sdk.evaluation.configs.retrieve("sdk-tiny", namespace="sdk-eval")
    assert config.type == "retriever"
    assert set(config.tasks) == {"tiny"}
    target = sdk.evaluation.targets.retrieve("sdk-base", namespace="sdk-eval")
    assert target.type == "retriever"
    assert target.retriever.pipeline.top_k == 5
    assert [c.name for c in sdk.evaluation.configs.list(filter={"namespace": "sdk-eval"}).data] == ["sdk-tiny"]
    assert [t.name for t in sdk.evaluation.targets.list(filter={"namespace": "sdk-eval"}).data] == ["sdk-base"]

    sdk.evaluation.configs.create(**{**eval_refs.config_body, "name": "sdk-extra"})
    sdk.evaluation.targets.create(**{**eval_refs.target_body, "name": "sdk-extra"})
    with pytest.raises(ConflictError):
        sdk.evaluation.configs.create(**{**eval_refs.config_body, "name": "sdk-extra"})
    sdk.evaluation.configs.delete("sdk-extra", namespace="sdk-eval")
    sdk.evaluation.targets.delete("sdk-extra", namespace="sdk-eval")
    with pytest.raises(NotFoundError):
        sdk.evaluation.configs.retrieve("sdk-extra", namespace="sdk-eval")
    with pytest.raises(NotFoundError):
        sdk.evaluation.targets.retrieve("sdk-extra", namespace="sdk-eval")


def test_evaluation_job_by_reference_runs_and_its_results_parse(sdk, completed_eval_job):
    job = sdk.evaluation.jobs.retrieve(completed_eval_job.id)
    assert job.status == "completed"
    assert job.status_details.progress == 100
    assert job.custom_fields == {"suite": "sdk", "run": "reference"}
    assert job.result
    status = sdk.evaluation.jobs.status(job.id)
    assert status.progress == 100
    results = sdk.evaluation.jobs.results(job.id)
    assert results.job == job.id
    assert set(results.tasks) == {"tiny"}
    metrics = parse_metrics(results.to_dict())
    assert set(metrics["tiny"]) == {"recall_5", "ndcg_cut_5", "recall_10", "ndcg_cut_10"}
    assert all(0.0 <= v <= 1.0 for v in metrics["tiny"].values())
    assert metrics["tiny"]["recall_10"] > 0


def test_evaluation_results_list_and_get(sdk, completed_eval_job):
    listed = sdk.evaluation.results.list(filter={"job_id": completed_eval_job.id})
    assert [r.job for r in listed.data] == [completed_eval_job.id]
    got = sdk.evaluation.results.retrieve(completed_eval_job.result)
    assert got.job == completed_eval_job.id
    assert set(got.tasks) == {"tiny"}


def test_evaluation_jobs_list_filter_sort_paginate(sdk, sent, platform, eval_refs, completed_eval_job):
    ns = "sdk-eval-list"
    sdk.namespaces.create(id=ns)
    failing = [sdk.evaluation.jobs.create(**_failing_eval_body(ns, platform.nim, namespace=ns)).id for _ in range(3)]
    for job_id in failing:
        assert _wait_eval(sdk, job_id).status == "failed"

    in_ns = sdk.evaluation.jobs.list(filter={"namespace": ns}, sort="created_at")
    assert [j.id for j in in_ns.data] == failing
    assert in_ns.pagination.total_results == 3
    assert [j.id for j in sdk.evaluation.jobs.list(filter={"namespace": ns}, sort="-created_at").data] == failing[::-1]
    assert "filter[namespace]=sdk-eval-list" in sent.queries("/v1/evaluation/jobs")[0]

    failed = sdk.evaluation.jobs.list(filter={"status": "failed"}, page_size=100)
    assert set(failing) <= {j.id for j in failed.data}
    assert all(j.status == "failed" for j in failed.data)
    completed = sdk.evaluation.jobs.list(filter={"status": "completed", "namespace": "sdk-eval"})
    assert completed_eval_job.id in [j.id for j in completed.data]
    assert all(j.status == "completed" for j in completed.data)

    first = sdk.evaluation.jobs.list(filter={"namespace": ns}, sort="created_at", page_size=2)
    assert (first.pagination.total_pages, first.pagination.current_page_size) == (2, 2)
    assert [j.id for j in first] == failing


def test_evaluation_jobs_search(sdk, platform, completed_eval_job):
    """``search[status]=completed,failed`` (the SDK joins a list with commas) matches either status."""
    ns = _unique("sdk-eval-search")
    sdk.namespaces.create(id=ns)
    failed = sdk.evaluation.jobs.create(**_failing_eval_body(ns, platform.nim, namespace=ns))
    assert _wait_eval(sdk, failed.id).status == "failed"
    found = {j.id for j in sdk.evaluation.jobs.list(search={"status": ["completed", "failed"]}, page_size=100).data}
    assert {failed.id, completed_eval_job.id} <= found
    only_completed = sdk.evaluation.jobs.list(search={"status": "completed"}, page_size=100)
    assert failed.id not in [j.id for j in only_completed.data], only_completed.to_dict()


def test_mismatch_evaluation_jobs_filter_on_custom_fields(sdk, sent, platform):
    """Issue 12, mismatch 2: the SDK sends ``filter[custom_fields][k]=v`` (bracket nesting); the job is found."""
    ns = _unique("sdk-eval-cf")
    sdk.namespaces.create(id=ns)
    value = uuid.uuid4().hex
    wanted = sdk.evaluation.jobs.create(
        **_failing_eval_body(ns, platform.nim, namespace=ns, custom_fields={"k": value, "other": "x"})
    )
    sdk.evaluation.jobs.create(**_failing_eval_body(ns, platform.nim, namespace=ns, custom_fields={"k": "another"}))
    sent.clear()
    found = sdk.evaluation.jobs.list(filter={"custom_fields": {"k": value}})
    assert f"filter[custom_fields][k]={value}" in sent.queries("/v1/evaluation/jobs")[0]
    assert [j.id for j in found.data] == [wanted.id], (
        f"filter[custom_fields][k]={value} found {[j.id for j in found.data]}, expected [{wanted.id}]"
    )


def test_evaluation_job_cancel_and_delete(sdk, platform, eval_refs):
    ns = _unique("sdk-eval-cancel")
    sdk.namespaces.create(id=ns)
    config = retriever_config(ns, beir_task("file://tiny/", name="tiny"))
    with stalling_endpoint(delay_s=3.0) as slow_url:
        # The evaluator runs one job at a time: while the first waits on a stalling embeddings endpoint, the second
        # is queued, and is cancelled before it starts.
        running = sdk.evaluation.jobs.create(
            config=config, target=retriever_target(slow_url, "x/y", top_k=5), namespace=ns
        )
        queued = sdk.evaluation.jobs.create(config=eval_refs.config, target=eval_refs.target, namespace=ns)
        sdk.evaluation.jobs.cancel(queued.id)
        assert sdk.evaluation.jobs.retrieve(queued.id).status == "cancelled"
        sdk.evaluation.jobs.cancel(running.id)
        assert _wait_eval(sdk, running.id, timeout_s=60).status in ("cancelled", "failed")
    with pytest.raises(ConflictError):
        sdk.evaluation.jobs.cancel(queued.id)  # it already ended
    sdk.evaluation.jobs.delete(queued.id)
    with pytest.raises(NotFoundError):
        sdk.evaluation.jobs.retrieve(queued.id)


# --------------------------------------------------------------------------------------------------- response shapes


def _scratch(ctx, kind: str) -> str:
    """A fresh object to delete (with the lenient client), in namespace ``sdk-shapes``; returns its name."""
    name = _unique(kind)
    if kind == "namespace":
        ctx.sdk.namespaces.create(id=name)
    elif kind == "dataset":
        ctx.sdk.datasets.create(name=name, namespace="sdk-shapes", files_url=f"hf://datasets/sdk-shapes/{name}")
    elif kind == "model":
        ctx.sdk.models.create(name=name, namespace="sdk-shapes", base_model=BASE_MODEL)
    return name


# One call of every kind the SDK exposes for the services the platform implements: (call, SDK model it returns).
SHAPE_CALLS: dict[str, Any] = {
    "namespaces.list": lambda c, x: c.namespaces.list(page_size=100),
    "namespaces.retrieve": lambda c, x: c.namespaces.retrieve("sdk-shapes"),
    "namespaces.delete": lambda c, x: c.namespaces.delete(_scratch(x, "namespace")),
    "datasets.list": lambda c, x: c.datasets.list(filter={"namespace": "sdk-shapes"}),
    "datasets.retrieve": lambda c, x: c.datasets.retrieve(x.dataset, namespace="sdk-shapes"),
    "datasets.delete": lambda c, x: c.datasets.delete(_scratch(x, "dataset"), namespace="sdk-shapes"),
    "models.list": lambda c, x: c.models.list(filter={"namespace": "sentence-transformers"}),
    "models.retrieve": lambda c, x: c.models.retrieve("all-MiniLM-L6-v2", namespace="sentence-transformers"),
    "models.delete": lambda c, x: c.models.delete(_scratch(x, "model"), namespace="sdk-shapes"),
    "customization.targets.list": lambda c, x: c.customization.targets.list(),
    "customization.targets.retrieve": lambda c, x: c.customization.targets.retrieve(
        DEFAULT_TARGET.split("/")[1], namespace=DEFAULT_TARGET.split("/")[0]
    ),
    "customization.configs.list": lambda c, x: c.customization.configs.list(),
    "customization.configs.retrieve": lambda c, x: c.customization.configs.retrieve("sdk-sft@v1", namespace="sdk-cust"),
    "customization.jobs.list": lambda c, x: c.customization.jobs.list(filter={"namespace": "sdk-cust"}),
    "customization.jobs.retrieve": lambda c, x: c.customization.jobs.retrieve(x.cust_job.id),
    "customization.jobs.status": lambda c, x: c.customization.jobs.status(x.cust_job.id),
    "customization.jobs.container_logs": lambda c, x: c.customization.jobs.container_logs(x.cust_job.id),
    "deployment.model_deployments.list": lambda c, x: c.deployment.model_deployments.list(),
    "deployment.model_deployments.retrieve": lambda c, x: c.deployment.model_deployments.retrieve(
        "sdk-base", namespace="sdk-deploy"
    ),
    "inference.models.list": lambda c, x: c.inference.models.list(),
    "embeddings.create": lambda c, x: c.embeddings.create(input=["shape"], model=x.served, input_type="query"),
    "evaluation.configs.list": lambda c, x: c.evaluation.configs.list(),
    "evaluation.configs.retrieve": lambda c, x: c.evaluation.configs.retrieve("sdk-tiny", namespace="sdk-eval"),
    "evaluation.targets.list": lambda c, x: c.evaluation.targets.list(),
    "evaluation.targets.retrieve": lambda c, x: c.evaluation.targets.retrieve("sdk-base", namespace="sdk-eval"),
    "evaluation.jobs.list": lambda c, x: c.evaluation.jobs.list(filter={"namespace": "sdk-eval"}),
    "evaluation.jobs.retrieve": lambda c, x: c.evaluation.jobs.retrieve(x.eval_job.id),
    "evaluation.jobs.status": lambda c, x: c.evaluation.jobs.status(x.eval_job.id),
    "evaluation.jobs.results": lambda c, x: c.evaluation.jobs.results(x.eval_job.id),
}


@pytest.fixture(scope="module")
def shape_ctx(sdk_and_log, served_base, cust_job, completed_eval_job):
    sdk = sdk_and_log[0]
    sdk.namespaces.create(id="sdk-shapes")
    sdk.datasets.create(name="shapes", namespace="sdk-shapes", files_url="hf://datasets/sdk-shapes/shapes")
    return SimpleNamespace(
        sdk=sdk, served=served_base, cust_job=cust_job, eval_job=completed_eval_job, dataset="shapes"
    )


@pytest.mark.parametrize("call", list(SHAPE_CALLS))
def test_response_parses_strictly_into_the_sdk_model(strict_sdk, shape_ctx, call):
    """The answer parses into the SDK's model with ``_strict_response_validation`` (required fields present, literal
    values from the SDK's vocabularies, a JSON body where the SDK expects one)."""
    SHAPE_CALLS[call](strict_sdk, shape_ctx)


# --------------------------------------------------------------------------------------------------- our bodies


def _our_bodies(nim_url: str) -> dict[str, tuple[Any, dict]]:
    """Every request body our builders produce, with the SDK parameter type it must satisfy."""
    config = sft_config_body("embed-ft-0123456789@v1", "embed-sft-ns", "nvidia/llama-3.2-nv-embedqa-1b@v2")
    job = sft_job_body(
        "embed-sft",
        "embed-sft-ns/embed-ft-0123456789@v1",
        "embed-sft-ns",
        "embed-sft-data",
        "embed-sft-ns/default-embed-sft",
        extra_hyperparameters={"max_steps": 10, "warmup_steps": 2, "seed": 42},
        dataset_parameters={"num_hard_negatives": 5},
        integrations=[{"type": "wandb", "wandb": {"project": "embed-ft"}}],
        description="SFT",
    )
    lora_job = sft_job_body(
        "embed-sft",
        "embed-sft-ns/lora@v1",
        "embed-sft-ns",
        "embed-sft-data",
        "embed-sft-ns/lora-embed-sft",
        finetuning_type="lora_merged",
        extra_hyperparameters={"lora": dict(LORA)},
    )
    tasks = beir_task("file://scifact/", name="scifact")
    tasks |= beir_task("hf://datasets/embed-sft-ns/heldout", name="heldout")
    return {
        "namespace": (namespace_create_params.NamespaceCreateParams, {"id": "embed-sft-ns"}),
        "dataset": (
            dataset_create_params.DatasetCreateParams,
            {
                "name": "embed-sft-data",
                "namespace": "embed-sft-ns",
                "description": "SPECTER triplets",
                "files_url": "hf://datasets/embed-sft-ns/embed-sft-data",
                "project": "embedding_sft",
            },
        ),
        "customization config": (cust_config_params.ConfigCreateParams, config),
        "customization job": (cust_job_params.JobCreateParams, with_idempotency_key(job, "a" * 64)),
        "customization job (lora_merged)": (cust_job_params.JobCreateParams, lora_job),
        "deployment": (
            model_deployment_create_params.ModelDeploymentCreateParams,
            {
                "name": "embed-sft-nim",
                "namespace": "embed-sft-ns",
                "config": {
                    "model": "embed-sft-ns/default-embed-sft@cust-AAAAAAAAAAAAAAAAAAAAAA",
                    "nim_deployment": nim_deployment_body(),
                },
            },
        ),
        "evaluation job": (
            eval_job_params.JobCreateParams,
            with_idempotency_key(
                {
                    "config": retriever_config("embed-sft-ns", tasks),
                    "target": retriever_target(nim_url, "embed-sft-ns/default-embed-sft", top_k=10, api_key=""),
                },
                "b" * 64,
            ),
        ),
        "embeddings": (
            embedding_create_params.EmbeddingCreateParams,
            {
                "input": ["q"],
                "model": "embed-sft-ns/default-embed-sft",
                "input_type": "query",
                "encoding_format": "float",
                "truncate": "END",
            },
        ),
    }


@pytest.mark.parametrize("what", list(_our_bodies("http://127.0.0.1:1")))
def test_our_builders_bodies_type_check_against_sdk_params(what):
    params_type, body = _our_bodies("http://127.0.0.1:1")[what]
    assert check_body(params_type, body) == [], f"{what} body: {body}"


PATH_PARAMS = {
    "/v1/namespaces": namespace_create_params.NamespaceCreateParams,
    "/v1/datasets": dataset_create_params.DatasetCreateParams,
    "/v1/customization/configs": cust_config_params.ConfigCreateParams,
    "/v1/customization/jobs": cust_job_params.JobCreateParams,
    "/v1/deployment/model-deployments": model_deployment_create_params.ModelDeploymentCreateParams,
    "/v1/evaluation/jobs": eval_job_params.JobCreateParams,
    "/v1/embeddings": embedding_create_params.EmbeddingCreateParams,
}


def test_bodies_our_clients_send_type_check_against_sdk_params(platform, served_base, cust_dataset, eval_refs):
    """Drive our own clients (``embed_ft.nemo``) against the platform, record every JSON body they send, and check
    each against the SDK's parameter type of its route."""
    calls = RecordedCalls()
    http = lambda service, base: calls.attach(ServiceHTTP(base, service, retries=0))  # noqa: E731
    es = EntityStoreClient(http("Entity Store", platform.base))
    cz = CustomizerClient(http("Customizer", platform.base))
    dm = DeploymentClient(http("Deployment Management", platform.base))
    ev = EvaluatorClient(http("Evaluator", platform.base))
    nim = NimClient(http("NIM", platform.nim))

    es.ensure_namespace("sdk-ours")
    es.create_dataset(
        cust_dataset.name,
        "sdk-ours",
        f"hf://datasets/{cust_dataset.namespace}/{cust_dataset.name}",
        description="ours",
        project="embedding_sft",
    )
    cz.create_config(sft_config_body("ours@v1", "sdk-ours", DEFAULT_TARGET, max_seq_length=64))
    job = cz.create_job(
        sft_job_body(
            "ours", "sdk-ours/ours@v1", cust_dataset.namespace, cust_dataset.name, "sdk-ours/ours-tuned", batch_size=8
        ),
        idempotency_key="c" * 64,
    )
    cz.cancel_job(job["id"])
    dm.create_deployment("sdk-base", "sdk-deploy", served_base, NIM)  # exists: answered with the existing one
    evaluation = ev.create_job(
        retriever_config("sdk-ours", beir_task("hf://datasets/sdk-ours/none", name="none")),
        retriever_target(platform.nim, served_base, top_k=5),
        idempotency_key="d" * 64,
    )
    nim.embed(["protein folding"], served_base, truncate="END")
    _wait_eval_http(platform.base, evaluation["id"])

    checked = 0
    for method, path, body in calls:
        if method != "POST" or body is None:
            continue
        assert path in PATH_PARAMS, f"no SDK parameter type known for POST {path}"
        assert check_body(PATH_PARAMS[path], body) == [], f"POST {path}: {body}"
        checked += 1
    assert {p for m, p, b in calls if m == "POST" and b is not None} == set(PATH_PARAMS)
    assert checked >= len(PATH_PARAMS)


def _wait_eval_http(base_url: str, job_id: str) -> dict:
    return wait_for(
        lambda: (
            (d := requests.get(f"{base_url}/v1/evaluation/jobs/{job_id}", timeout=TIMEOUT).json())["status"]
            in JOB_TERMINAL
            and d
        ),
        60,
        f"evaluation job {job_id} to end",
    )


def test_launchpad_finetuning_types_are_the_sdk_s():
    """Issue 12, mismatch 4 in our Launchpad config: ``p_tuning`` is refused; the SDK's three types are accepted and
    the asset's request bodies type-check against the SDK."""
    from embed_ft.defs.training import customization_bodies
    from embed_ft.defs.values import UploadedDataset
    from embed_ft.profiles import LOCAL
    from embed_ft.spec.changes import SpecError, apply_changes
    from embed_ft.spec.presets import preset_spec

    spec = preset_spec("scifact", LOCAL)
    with pytest.raises(SpecError, match="finetuning_type"):
        apply_changes(spec, {"training.finetuning_type": "p_tuning"})
    dataset = UploadedDataset(
        namespace="embed-sft-ns",
        name="embed-sft-data",
        repo_id="embed-sft-ns/embed-sft-data",
        files_url="hf://datasets/embed-sft-ns/embed-sft-data",
        commit=None,
        data_version="v",
    )
    lora = {f"training.lora.{key}": LORA[key] for key in ("adapter_dim", "alpha", "adapter_dropout", "target_modules")}
    for finetuning_type in ("all_weights", "lora", "lora_merged"):
        config = apply_changes(spec, {"training.finetuning_type": finetuning_type, **lora}).training
        bodies = customization_bodies(config, experiment="default", namespace="embed-sft-ns", dataset=dataset)
        assert check_body(cust_config_params.ConfigCreateParams, bodies["config"]) == []
        assert check_body(cust_job_params.JobCreateParams, {**bodies["job"], "name": "x"}) == []
        assert bodies["job"]["hyperparameters"]["finetuning_type"] == finetuning_type
        assert bodies["job"]["hyperparameters"].get("lora") == (LORA if finetuning_type != "all_weights" else None)


# --------------------------------------------------------------------------------------------------- idempotency


OLD_JOBS = 2_000


@pytest.mark.slow  # 13 s: 2,000 jobs over HTTP
def test_mismatch_idempotency_lookup_finds_an_old_job_among_more_than_2000(tmp_path):
    """Issue 12, mismatch 3: on a platform holding > 2,000 jobs, our lookup by idempotency key still finds the job
    submitted before all the others (today it scans at most 20 pages x 100 jobs, so a rerun would submit it again)."""
    with running_platform(tmp_path) as (base_url, settings):
        nim_url = nim_url_of(settings)
        ev = EvaluatorClient(ServiceHTTP(base_url, "Evaluator", retries=0))
        key = "e" * 64
        body = _failing_eval_body("busy", nim_url)
        original = ev.create_job(body["config"], body["target"], idempotency_key=key)

        started = time.monotonic()
        sessions: dict[int, requests.Session] = {}

        def submit(i: int) -> int:
            import threading

            session = sessions.setdefault(threading.get_ident(), requests.Session())
            extra = {"custom_fields": {IDEMPOTENCY_FIELD: f"other-{i}"}} if i % 2 else {}
            return session.post(
                f"{base_url}/v1/evaluation/jobs", json=_failing_eval_body("busy", nim_url, **extra), timeout=TIMEOUT
            ).status_code

        with ThreadPoolExecutor(4) as pool:
            codes = list(pool.map(submit, range(OLD_JOBS)))
        assert set(codes) == {200}
        logging.getLogger(__name__).info("created %d jobs in %.1f s", OLD_JOBS, time.monotonic() - started)
        total = requests.get(f"{base_url}/v1/evaluation/jobs", params={"page_size": 1}, timeout=TIMEOUT).json()
        assert total["pagination"]["total_results"] == OLD_JOBS + 1

        found = ev.find_job(key)
        assert found is not None, (
            f"find_job({key[:8]}...) returned None on a platform holding {OLD_JOBS + 1} evaluation jobs: the job "
            f"{original['id']} exists, so a rerun would submit a duplicate"
        )
        assert found["id"] == original["id"]


# --------------------------------------------------------------------------------------------------- job polling


def _job_waiter():
    """Our assets' public way of waiting on a customization/evaluation job, as a function of ``fetch``.

    It moved while issue 12 was worked on; the first that exists is used: ``defs.remote_jobs.run_remote_job``
    (reattach-or-submit, then wait), ``defs.remote_jobs.wait_for_job``, ``defs.common.wait_for_remote`` (before).
    """
    import importlib

    context = SimpleNamespace(log=logging.getLogger("test_sdk_conformance"))
    what = "customization job"
    timing = {"timeout_s": 10, "interval_s": 0.01}
    try:
        remote_jobs = importlib.import_module("embed_ft.defs.remote_jobs")
    except ImportError:
        remote_jobs = None
    if remote_jobs is not None and hasattr(remote_jobs, "run_remote_job"):
        return lambda fetch: remote_jobs.run_remote_job(
            context,
            what=what,
            key="k" * 64,
            find=lambda key: None,
            submit=lambda: {"id": "cust-test"},
            fetch=lambda job_id: fetch(),
            cancel=lambda job_id: None,
            **timing,
        )[1]
    if remote_jobs is not None and hasattr(remote_jobs, "wait_for_job"):
        return lambda fetch: remote_jobs.wait_for_job(context, what=what, fetch=fetch, cancel=lambda: None, **timing)
    from embed_ft.defs.common import wait_for_remote

    return lambda fetch: wait_for_remote(
        context, what=what, fetch=fetch, cancel=None, status_of=lambda doc: str(doc.get("status")).lower(), **timing
    )


def test_mismatch_ready_is_not_a_terminal_job_status():
    """Issue 12, mismatch 5: jobs end only at completed, failed or cancelled. A job that reports ``ready`` (a word of
    the SDK's ``JobStatus``) is still waited on by our job polling, not ended as "ended ready"."""
    sequence = iter([{"status": "running"}, {"status": "ready"}, {"status": "READY"}, {"status": "completed"}])
    final = _job_waiter()(lambda: next(sequence))
    assert final == {"status": "completed"}, f"job polling stopped at {final}"
