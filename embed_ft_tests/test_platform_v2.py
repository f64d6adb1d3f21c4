"""The embedded platform's NeMo Platform v2 routes (automodel jobs, deployment configs, deployments, the gateway),
driven through our v2 clients on a real `platform serve` over loopback, with the training data in a fileset of a
real Helix (the `helix` fixture): the one code path the lineage uses against a cluster."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
import requests
from fastapi.testclient import TestClient

from embed_ft.helix import helix_venv
from embed_ft.nemo.errors import NemoAPIError
from embed_ft.nemo.http import ServiceHTTP
from embed_ft.nemo.nim import NimClient
from embed_ft.nemo.polling import poll
from embed_ft.nemo.status import CANCELLED, COMPLETED, FAILED, is_failed, is_ready, is_terminal, job_status
from embed_ft.nemo.v1.customization import Hyperparameters, LoraParameters
from embed_ft.nemo.v2 import contract
from embed_ft.nemo.v2.files import FilesClient, fileset_ref
from embed_ft.nemo.v2.jobs import automodel_jobs, failure_text, job_name
from embed_ft.nemo.v2.models import ModelsClient, gateway_provider_url
from embed_ft.platform.app import create_app
from embed_ft.platform.services.automodel_spec import V2_FIELDS, hyperparameters
from embed_ft.platform.services.errors import InvalidInputError
from embed_ft.platform.settings import PlatformSettings

from .platform_server import running_platform

pytestmark = pytest.mark.slow  # Helix start-up, and real (tiny) training runs in a spawned worker

WS = "embed-ft-v2-tests"
BASE_TARGET = "sentence-transformers/all-minilm-l6-v2@v1"  # the platform's default target (the packaged MiniLM)
BASE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
TOPICS = ["cats", "rockets", "bread", "markets", "rivers", "chess", "violins", "glaciers"]


def triplets(n: int = 16) -> str:
    rows = []
    for i in range(n):
        topic, other = TOPICS[i % len(TOPICS)], TOPICS[(i + 3) % len(TOPICS)]
        rows.append(
            {
                "query": f"question {i} about {topic}",
                "pos_doc": f"A passage about {topic}, number {i}.",
                "neg_doc": [f"A passage about {other}.", f"Something unrelated {i}."],
            }
        )
    return "".join(json.dumps(r) + "\n" for r in rows)


def upload(helix_url: str, fileset: str, files: dict[str, str], tmp_path: Path) -> str:
    client = FilesClient(ServiceHTTP(helix_url, "files"))
    client.ensure_workspace(WS)
    client.ensure_fileset(WS, fileset, purpose="dataset")
    local = {}
    for path, text in files.items():
        target = tmp_path / fileset / path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
        local[path] = target
    client.upload_files(WS, fileset, local)
    return fileset_ref(WS, fileset)


def job_request(
    training: str, max_steps: int = 2, output: str | None = None, epochs: int = 1, validation: str | None = None
) -> contract.AutomodelJobRequest:
    return contract.AutomodelJobRequest(
        name="placeholder",  # the client names it from the idempotency key
        spec=contract.AutomodelJobSpec(
            model=BASE_TARGET,
            dataset=contract.AutomodelDataset(training=training, validation=validation),
            training=contract.AutomodelTraining(finetuning_type="all_weights", max_seq_length=64),
            schedule=contract.AutomodelSchedule(epochs=epochs, max_steps=max_steps),
            batch=contract.AutomodelBatch(global_batch_size=4),
            optimizer=contract.AutomodelOptimizer(learning_rate=1e-5),
            output=contract.AutomodelOutput(name=output) if output else None,
        ),
    )


@pytest.fixture(scope="module")
def platform(helix, tmp_path_factory):
    """`platform serve` reading filesets from the Helix fixture's Files service."""
    with running_platform(tmp_path_factory.mktemp("v2-platform"), v2_files_url=helix.url) as (url, settings):
        yield url


@pytest.fixture(scope="module")
def data(helix, platform, tmp_path_factory):
    folder = tmp_path_factory.mktemp("v2-data")
    return {
        "good": upload(
            helix.url, "sft-good", {"training/train.jsonl": triplets(), "validation/val.jsonl": triplets(4)}, folder
        ),
        "flat": upload(helix.url, "sft-flat", {"train.jsonl": triplets()}, folder),
        "broken": upload(helix.url, "sft-broken", {"train.jsonl": '{"query": "no positive"}\n'}, folder),
    }


def wait_job(jobs, name: str, timeout_s: float = 400) -> dict:
    return poll(lambda: jobs.get(name), is_terminal, timeout_s=timeout_s, interval_s=0.5, what=f"job {name}")


def test_automodel_job_trains_reattaches_and_its_output_deploys(platform, data):
    http = ServiceHTTP(platform, "platform", timeout=(5.0, 60.0))
    jobs, models = automodel_jobs(http, WS), ModelsClient(http)
    key = "1a" * 32
    assert jobs.find(key) is None
    # Folders of one fileset, as the lineage names them (the root's training/ layout is read too: see below).
    good = data["good"]
    job = jobs.create(job_request(f"{good}#training/", output="minilm-sft-good", validation=f"{good}#validation/"), key)
    assert job["id"] == job_name("embed-ft-sft", key)
    assert job["status"] in ("created", "pending", "active")
    assert job["spec"]["output"] == {"name": "minilm-sft-good", "type": "model", "fileset": "minilm-sft-good"}
    assert jobs.find(key)["job_id"] == job["job_id"]  # reattach by name, not resubmit
    with pytest.raises(NemoAPIError) as twice:  # the same name again: 409
        http.post(jobs.path, json={**job_request(data["good"]).body(), "name": job["id"]})
    assert twice.value.status == 409
    done = wait_job(jobs, job["id"])
    assert job_status(done) == COMPLETED, failure_text(done)
    assert done["status_details"]["steps_completed"] == 2
    assert done["status_details"]["val_loss"] is not None  # the #validation/ folder was read
    task = done["steps"][0]["tasks"][0]  # where a cluster's automodel job reports progress
    assert (task["status"], task["status_details"]["step"], task["status_details"]["max_steps"]) == (COMPLETED, 2, 2)
    assert [r.name for r in jobs.results(job["id"])] == ["output-model"]
    output = json.loads(jobs.download_result(job["id"], "output-model"))
    assert output["model"] == f"{WS}/minilm-sft-good"
    assert models.get_model(WS, "minilm-sft-good").base_model == BASE_TARGET
    listed = http.get(jobs.path, params={"filter[status]": "completed"})
    assert [j["name"] for j in listed["data"]] == [job["id"]]

    # The output model and the base model deploy; each answers /v1/embeddings through the gateway route.
    vectors = {}
    for name, (model_ns, model_name) in {
        "tuned": (WS, "minilm-sft-good"),
        "base": tuple(BASE_MODEL.split("/")),
    }.items():
        config = contract.CreateDeploymentConfigRequest(
            name=f"{name}-config",
            model_spec=contract.DeploymentModelSpec(model_namespace=model_ns, model_name=model_name),
            executor_config=contract.ContainerExecutorConfig(gpu=0),
        )
        assert models.ensure_deployment_config(WS, config).created
        created = models.ensure_deployment(WS, contract.CreateDeploymentRequest(name=name, config=config.name))
        assert created["status"] in ("PENDING", "READY")
        ready = poll(
            lambda n=name: models.get_deployment(WS, n).model_dump(),
            lambda d: is_ready(d) or is_failed(d),
            timeout_s=120,
            interval_s=0.5,
            what=f"deployment {name}",
        )
        assert ready["status"] == "READY", ready["status_message"]
        provider = models.get_provider(WS, ready["model_provider_id"].split("/")[1])
        models.wait_for_provider(WS, provider.name)
        gateway = NimClient(ServiceHTTP(gateway_provider_url(platform, WS, provider.name), "gateway"))
        vectors[name] = gateway.embed(["cats purr all day"], provider.served_models[0])[0]
        assert len(vectors[name]) == 384
    assert vectors["tuned"] != vectors["base"]  # two steps moved the weights
    models.delete_deployment(WS, "tuned")
    assert models.get_deployment(WS, "tuned") is None
    assert not models.provider_ready(WS, "tuned")  # the gateway no longer routes to it


def test_flat_fileset_trains_and_cancel_ends_cancelled(platform, data):
    http = ServiceHTTP(platform, "platform")
    jobs = automodel_jobs(http, WS)
    flat = data["flat"]  # its validation folder is empty: the job trains without validation rows
    long = jobs.create(job_request(flat, max_steps=100_000, epochs=1000, validation=f"{flat}#validation/"), "2b" * 32)
    poll(
        lambda: jobs.get(long["id"]),
        lambda d: d["status"] == "active" or is_terminal(d),
        timeout_s=300,
        interval_s=0.5,
        what="training to start",
    )
    jobs.cancel(long["id"])
    ended = wait_job(jobs, long["id"], timeout_s=120)
    assert job_status(ended) == CANCELLED
    assert jobs.cancel(long["id"])["status"] == CANCELLED  # a second cancel: 409 -> the job as it is
    http.delete(f"{jobs.path}/{long['id']}")  # an ended job can be forgotten
    assert jobs.get_or_none(long["id"]) is None


def test_failure_text_and_bad_input_name_the_field(platform, data):
    http = ServiceHTTP(platform, "platform")
    jobs = automodel_jobs(http, WS)
    broken = jobs.create(job_request(data["broken"]), "3c" * 32)
    ended = wait_job(jobs, broken["id"], timeout_s=300)
    assert job_status(ended) == FAILED
    assert "sft-broken" in failure_text(ended)
    assert "broken row" in failure_text(ended)

    def refused(body: dict, field: str, status: int = 422) -> None:
        answer = requests.post(f"{platform}{jobs.path}", json=body, timeout=30)
        assert answer.status_code == status, answer.text
        assert field in answer.text

    good = {**job_request(data["good"]).body(), "name": "bad-input-probe"}
    refused({**good, "name": "Bad_Name"}, "name")
    refused(
        {**good, "spec": {**good["spec"], "dataset": {"training": f"{WS}/no-such-fileset"}}}, "spec.dataset.training"
    )
    refused({**good, "spec": {**good["spec"], "schedule": {"max_steps": 10**9}}}, "spec.schedule.max_steps")
    refused({**good, "spec": {**good["spec"], "model": "nowhere/no-model"}}, "spec.model")
    refused({**good, "spec": {**good["spec"], "dataset": {"training": f"{WS}/x#../up"}}}, "spec.dataset.training")
    refused({**good, "spec": {**good["spec"], "unknown": 1}}, "unknown")
    producing = jobs.create(job_request(data["good"], output="dup-output"), "4d" * 32)
    refused({**good, "spec": {**good["spec"], "output": {"name": "dup-output"}}}, "spec.output.name", status=409)
    jobs.cancel(producing["id"])
    refused(
        {**good, "spec": {**good["spec"], "training": {"finetuning_type": "all_weights", "precision": "fp8"}}},
        "spec.training.precision",
    )
    deployments = f"{platform}{contract.workspace_path(contract.MODELS, WS, 'deployments')}"
    answer = requests.post(deployments, json={"name": "nothing", "config": "no-such-config"}, timeout=30)
    assert answer.status_code == 422
    assert "config" in answer.text


def test_accepted_request_bodies_validate_against_installed_helix_schemas(data):
    """Every body these routes accept is one Helix's own request models (from the installed package) accept."""
    spec = job_request(data["good"], output="out-name").spec
    lora = spec.model_copy(
        update={
            "training": contract.AutomodelTraining(
                finetuning_type="lora_merged", lora=contract.AutomodelLoRA(rank=8, alpha=16, dropout=0.1)
            )
        }
    )
    bodies = {
        "automodel": [
            contract.AutomodelJobRequest(name="job-a", spec=spec, custom_fields={"k": "v"}).body(),
            contract.AutomodelJobRequest(name="job-b", description="d", spec=lora).body(),
        ],
        "config": [
            contract.CreateDeploymentConfigRequest(
                name="cfg",
                model_spec=contract.DeploymentModelSpec(model_namespace=WS, model_name="m"),
                executor_config=contract.ContainerExecutorConfig(gpu=0, image_name="nim", image_tag="1"),
            ).body()
        ],
        "deployment": [contract.CreateDeploymentRequest(name="dep", config="cfg", config_version=1).body()],
    }
    script = (
        "import json, sys\n"
        "from nemo_automodel_plugin.schema import AutomodelJobInput\n"
        "from nemo_helix_plugin.jobs.api_factory import BaseJobRequest\n"
        "from nhx.core.models.schemas import CreateModelDeploymentConfigRequest, CreateModelDeploymentRequest\n"
        "kinds = {'automodel': BaseJobRequest[AutomodelJobInput], 'config': CreateModelDeploymentConfigRequest,\n"
        "         'deployment': CreateModelDeploymentRequest}\n"
        "for kind, bodies in json.load(sys.stdin).items():\n"
        "    for body in bodies:\n"
        "        kinds[kind].model_validate(body)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [str(helix_venv() / "bin" / "python"), "-c", script],
        input=json.dumps(bodies),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip() == "ok"


def test_lists_page_filter_and_sort_and_a_missing_object_is_a_404_naming_it(tmp_path):
    """The v2 list and get routes (one helper: ``api/deps.answer``/``answer_page``): the list envelope, paged,
    filtered and sorted, each item in its contract shape; a get of what does not exist is a 404 naming it."""
    models = contract.workspace_path(contract.MODELS, WS)
    jobs = contract.workspace_path(contract.CUSTOMIZATION, WS, "automodel", "jobs")
    spec = contract.DeploymentModelSpec(model_namespace=WS, model_name="m1")
    with TestClient(create_app(PlatformSettings(home=tmp_path / "home"))) as client:
        for name in ("cfg-b", "cfg-a", "cfg-c"):
            config = contract.CreateDeploymentConfigRequest(
                name=name, model_spec=spec, executor_config=contract.ContainerExecutorConfig(gpu=0)
            )
            assert client.post(f"{models}/deployment-configs", json=config.body()).status_code == 201
        page = client.get(f"{models}/deployment-configs", params={"sort": "name", "page": 2, "page_size": 2}).json()
        assert [c["name"] for c in page["data"]] == ["cfg-c"]
        expected = contract.Pagination(page=2, page_size=2, current_page_size=1, total_pages=2, total_results=3)
        assert page["pagination"] == expected.model_dump()
        assert page["sort"] == "name"
        found = client.get(f"{models}/deployment-configs", params={"filter[name]": "cfg-a"}).json()
        assert [c["name"] for c in found["data"]] == ["cfg-a"]
        got = contract.DeploymentConfig.model_validate(client.get(f"{models}/deployment-configs/cfg-a").json())
        assert (got.workspace, got.model_spec) == (WS, spec.body())
        assert client.get(f"{models}/deployments").json()["data"] == []
        assert client.get(jobs).json()["pagination"]["total_results"] == 0
        assert client.post("/v1/namespaces", json={"id": WS}).status_code == 201
        assert client.post("/v1/models", json={"name": "m1", "namespace": WS, "base_model": BASE_MODEL}).is_success
        entity = contract.ModelEntity.model_validate(client.get(f"{models}/models/m1").json())
        assert (entity.workspace, entity.fileset, entity.base_model) == (WS, f"{WS}/m1", BASE_MODEL)
        missing = {
            f"{models}/deployment-configs/nope": "deployment config",
            f"{models}/deployments/nope": "deployment",
            f"{models}/models/nope": "model",
            f"{jobs}/nope": "automodel job",
        }
        for path, what in missing.items():
            answer = client.get(path)
            assert answer.status_code == 404, path
            assert answer.json() == {"detail": f"{what} {WS}/nope not found"}


def v2_spec(**values: object) -> contract.AutomodelJobSpec:
    """An automodel spec with ``values`` set at their v2 paths (``schedule.epochs=...``, given as
    ``schedule__epochs``)."""
    body: dict = {
        "model": f"{WS}/m",
        "dataset": {"training": f"{WS}/fs"},
        "training": {"finetuning_type": "lora", "lora": {}},
        "batch": {"global_batch_size": 8},
        "optimizer": {"learning_rate": 1e-5},
    }
    for path, value in values.items():
        *parents, leaf = path.split("__")
        node = body
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return contract.AutomodelJobSpec.model_validate(body)


def upper_bound(model: type, key: str) -> float | None:
    return next((m.le for m in model.model_fields[key].metadata if getattr(m, "le", None) is not None), None)


def test_v2_hyperparameters_are_the_v1_contract_s_with_its_bounds_and_defaults():
    """A v2 spec's hyperparameters are built with the v1 contract's ``Hyperparameters`` (one definition of each
    limit and default): a value past a v1 upper bound is refused naming the v2 field it was sent in, the bound
    itself is accepted, and what is stored is what a v1 job with the same values stores."""
    checked = 0
    for v1_path, v2_field in V2_FIELDS.items():
        model = LoraParameters if v1_path[0] == "lora" else Hyperparameters
        bound = upper_bound(model, v1_path[-1])
        if bound is None:
            continue
        at_path = v2_field.removeprefix("spec.").replace(".", "__")
        beyond = bound + 1 if isinstance(bound, int) else bound * 1.5
        assert hyperparameters(v2_spec(**{at_path: bound})), v2_field
        with pytest.raises(InvalidInputError) as refused:
            hyperparameters(v2_spec(**{at_path: beyond}))
        assert refused.value.field == v2_field
        assert str(bound) in str(refused.value)
        checked += 1
    assert checked == 9  # every bounded hyperparameter: epochs ... max_seq_length, LoRA rank and alpha
    with pytest.raises(InvalidInputError) as infinite:
        hyperparameters(v2_spec(optimizer__weight_decay=float("inf")))
    assert infinite.value.field == "spec.optimizer.weight_decay"
    spec = v2_spec(schedule__epochs=3, schedule__seed=7, training__lora__rank=4, training__lora__dropout=0.1)
    v1 = Hyperparameters(
        finetuning_type="lora",
        epochs=3,
        seed=7,
        batch_size=8,
        learning_rate=1e-5,
        lora={"adapter_dim": 4, "adapter_dropout": 0.1},
    )
    assert hyperparameters(spec) == v1.model_dump(exclude_none=True)


def test_restart_keeps_jobs_and_deployments_and_fails_an_interrupted_job(helix, data, tmp_path):
    """A job active when the platform stops is `error` after the restart, saying why; a READY v2 deployment is served
    again; configs and jobs are still found by name."""
    with running_platform(tmp_path, v2_files_url=helix.url) as (url, _settings):
        http = ServiceHTTP(url, "platform")
        jobs, models = automodel_jobs(http, WS), ModelsClient(http)
        spec = contract.DeploymentModelSpec(model_namespace="sentence-transformers", model_name="all-MiniLM-L6-v2")
        config = contract.CreateDeploymentConfigRequest(
            name="base-config", model_spec=spec, executor_config=contract.ContainerExecutorConfig(gpu=0)
        )
        models.ensure_deployment_config(WS, config)
        models.ensure_deployment(WS, contract.CreateDeploymentRequest(name="base", config="base-config"))
        poll(
            lambda: models.get_deployment(WS, "base").model_dump(),
            is_ready,
            timeout_s=120,
            interval_s=0.5,
            what="deployment",
        )
        job = jobs.create(job_request(data["flat"], max_steps=100_000, epochs=1000), "5e" * 32)
        poll(
            lambda: jobs.get(job["id"]),
            lambda d: d["status"] == "active",
            timeout_s=300,
            interval_s=0.5,
            what="training to start",
        )
    with running_platform(tmp_path, v2_files_url=helix.url) as (url, _settings):
        http = ServiceHTTP(url, "platform")
        jobs, models = automodel_jobs(http, WS), ModelsClient(http)
        interrupted = jobs.find("5e" * 32)
        assert job_status(interrupted) == FAILED
        assert "platform stopped" in failure_text(interrupted).lower()
        restored = poll(
            lambda: models.get_deployment(WS, "base").model_dump(),
            lambda d: is_ready(d) or is_failed(d),
            timeout_s=120,
            interval_s=0.5,
            what="restored deployment",
        )
        assert restored["status"] == "READY"
        gateway = NimClient(ServiceHTTP(gateway_provider_url(url, WS, "base"), "gateway"))
        assert len(gateway.embed(["bread"], BASE_MODEL)[0]) == 384
