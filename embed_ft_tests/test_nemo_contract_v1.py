"""The v1 wire contract is written once (``embed_ft/nemo/v1/``): the page documents only routes that have their
models there, the embedded platform serves every route there and validates each JSON body with the contract's own
model, the clients' builders refuse what the contract refuses, and the fake answers a bad body as the platform does.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import pytest
from fastapi.routing import APIRoute
from nemo_microservices.types.shared.pagination_data import PaginationData
from pydantic import ValidationError

from embed_ft.nemo.customizer import CustomizerClient, lora_parameters, sft_config_body, sft_job_body
from embed_ft.nemo.errors import NemoAPIError, NemoResponseError, parse_answer
from embed_ft.nemo.nim import NimClient
from embed_ft.nemo.v1 import contract as v1, customization as cust, evaluation as ev
from embed_ft.nemo.v1.routes import NIM, ROUTES, Route
from embed_ft.nemo.wire import Pagination
from embed_ft.platform.api import nim as nim_api
from embed_ft.platform.app import ROUTERS, create_app
from embed_ft.platform.settings import NIM_PATH_PREFIX, PlatformSettings
from embed_ft_tests.nemo_fake import fake_nemo, fast_http  # noqa: F401  (fixture)

CONTRACT_PAGE = Path(__file__).resolve().parents[1] / "docs" / "NEMO_CONTRACT.md"
METHODS = "GET|POST|PUT|PATCH|DELETE|HEAD"
# `POST $NEMO_URL/v1/namespaces`, `GET|DELETE /v1/models/{ns}/{name}`, `POST /api/repos/create` (under /v1/hf)
DOCUMENTED = re.compile(rf"`((?:{METHODS})(?:\|(?:{METHODS}))*)\s+(?:\$\w+)?(/[^\s`?\[|]*)")


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{[^}]*\\\}", "[^/]+", re.escape(template)) + "$")


def _concrete(template: str) -> str:
    return re.sub(r"\{[^}]*\}", "x", template)


def documented_routes() -> list[tuple[str, str]]:
    """(method, path) of every route the v1 part of docs/NEMO_CONTRACT.md names with a method."""
    page = CONTRACT_PAGE.read_text().split("# The NeMo Platform v2 wire contract")[0]
    found = []
    for methods, path in DOCUMENTED.findall(page):
        if path.startswith(("/api/", "/datasets/")):  # section 2: relative to $NDS_URL/v1/hf
            path = f"/v1/hf{path}"
        found += [(method, path.rstrip("/")) for method in methods.split("|")]
    return sorted(set(found))


def routes_matching(method: str, path: str) -> list[Route]:
    concrete = _concrete(path)
    return [r for r in ROUTES if r.method == method and _template_regex(r.path).match(concrete)]


def test_the_page_documents_routes_and_each_has_its_models_in_the_contract():
    documented = documented_routes()
    assert len(documented) >= 40, documented  # the parser still reads the page
    missing = [f"{method} {path}" for method, path in documented if not routes_matching(method, path)]
    assert missing == [], f"documented in docs/NEMO_CONTRACT.md but not in embed_ft/nemo/v1/routes.py: {missing}"


def test_every_json_body_route_of_the_contract_is_documented():
    documented = documented_routes()
    undocumented = [
        f"{r.method} {r.path}"
        for r in ROUTES
        if r.request is not None
        and not any(m == r.method and _template_regex(r.path).match(_concrete(p)) for m, p in documented)
        and r.path not in ("/v1/evaluation/configs", "/v1/evaluation/targets")  # the page names them without a method
    ]
    assert undocumented == []


def _served_routes() -> list[tuple[str, APIRoute]]:
    """(prefix, route) of every route the embedded platform's api routers serve, as ``create_app`` mounts them."""
    create_app(PlatformSettings())  # the routers are those the app includes
    mounted = [("", router) for router in ROUTERS] + [(NIM_PATH_PREFIX, nim_api.router)]
    return [(prefix, r) for prefix, router in mounted for r in router.routes if isinstance(r, APIRoute)]


def test_the_embedded_platform_serves_every_contract_route_and_validates_with_its_model():
    served = _served_routes()
    problems = []
    for route in ROUTES:
        if route.path.startswith("/v1/health/"):
            continue  # answered by the app itself (app.py), not an api router
        path = _concrete((NIM_PATH_PREFIX if route.base == NIM else "") + route.path)
        handlers = [
            r for prefix, r in served if route.method in r.methods and r.path_regex.match(path.removeprefix(prefix))
        ]
        if route.method == "HEAD":
            handlers = handlers or [r for prefix, r in served if "GET" in r.methods and r.path_regex.match(path)]
        if not handlers:
            problems.append(f"not served: {route.method} {route.path}")
            continue
        handler = handlers[0]
        body_model = None
        if handler.body_field is not None:
            body_model = handler.body_field.field_info.annotation
        if body_model is dict and route.request is not None:
            # The Evaluator takes the raw object so that its own checks can name a problem first; it then calls
            # ``contract_checked`` with the contract's model (api/evaluator.py).
            source = inspect.getsource(handler.endpoint)
            if f"contract_checked({route.request.__name__}," not in source:
                problems.append(f"{route.method} {route.path} does not check {route.request.__name__}")
        elif body_model is not None and body_model is not route.request:
            problems.append(f"{route.method} {route.path} validates with {body_model}, not {route.request}")
    assert problems == []


def test_the_platform_v1_api_defines_no_body_models_of_its_own():
    """The platform's v1 api modules import their body models from the contract (no second copy to drift)."""
    api = Path(__file__).resolve().parents[1] / "embed_ft" / "platform" / "api"
    v1_modules = ("customizer", "datastore", "deployment", "entities", "evaluator", "nim")
    own = [
        f"{name}.py: {model}"
        for name in v1_modules
        for model in re.findall(r"^class (\w+)\((?:BaseModel|Request)\)", (api / f"{name}.py").read_text(), re.M)
    ]
    assert own == []


# ------------------------------------------------------------------------------------------------- the clients


def test_the_builders_refuse_what_the_contract_refuses():
    with pytest.raises(ValidationError, match="finetuning_type"):
        sft_config_body("c@v1", "ns", "ns/target", finetuning_type="p_tuning")
    with pytest.raises(ValidationError, match="finetuning_type"):
        sft_job_body("j", "ns/c@v1", "ns", "data", "ns/out", finetuning_type="p_tuning")
    with pytest.raises(ValidationError, match="learning_rte"):
        sft_job_body("j", "ns/c@v1", "ns", "data", "ns/out", extra_hyperparameters={"learning_rte": 0.1})
    with pytest.raises(ValidationError, match="epochs"):
        sft_job_body("j", "ns/c@v1", "ns", "data", "ns/out", epochs=0)
    with pytest.raises(ValidationError, match="adapter_dim"):
        lora_parameters(adapter_dim=0)


def test_the_builders_send_only_what_they_set():
    """Server-side defaults of the contract (the local profile's) never travel: a body holds what the caller set."""
    job = sft_job_body("j", "ns/c@v1", "ns", "data", "ns/out", epochs=2, batch_size=8, learning_rate=1e-5)
    assert job["hyperparameters"] == {
        "training_type": "sft",
        "finetuning_type": "all_weights",
        "epochs": 2,
        "batch_size": 8,
        "learning_rate": 1e-5,
    }
    assert set(job) == {"name", "config", "dataset", "hyperparameters", "output_model"}
    assert cust.JobRequest.model_validate(job).body() == job


def test_a_malformed_answer_is_a_response_error_naming_the_field():
    with pytest.raises(NemoResponseError, match=r"ModelDeployment\): name"):
        parse_answer(v1.ModelDeployment, {"namespace": "ns"}, "Deployment Management: get deployment")
    assert parse_answer(ev.Job, {"id": "eval-1", "extra": 1}, "get").model_extra == {"extra": 1}


def test_a_client_reading_an_answer_off_contract_fails_naming_it(fake_nemo):  # noqa: F811
    fake_nemo.fail_next(1, status=200, method="GET", path=r"/v1/customization/jobs/cust-1", body={"status": "running"})
    customizer = CustomizerClient(fast_http(fake_nemo, "Customizer"))
    with pytest.raises(NemoResponseError, match=r"get customization job.*\(Job\): id"):
        customizer.get_job("cust-1")


def test_the_fake_answers_a_body_off_contract_with_a_422_naming_the_field(fake_nemo):  # noqa: F811
    http = fast_http(fake_nemo, "Customizer")
    body = sft_job_body("j", "ns/c@v1", "ns", "data", "ns/out")
    body["hyperparameters"]["epochs"] = 0
    with pytest.raises(NemoAPIError) as info:
        http.post("/v1/customization/jobs", json=body)
    assert info.value.status == 422
    assert "epochs" in str(info.value)
    assert fake_nemo.jobs == {}


def test_the_fake_serves_embeddings_as_the_contract_says(fake_nemo):  # noqa: F811
    fake_nemo.served_models.append("ns/model")
    vectors = NimClient(fast_http(fake_nemo, "NIM")).embed(["a", "b"], "ns/model", encoding_format="base64")
    assert len(vectors) == 2
    assert len(vectors[0]) == fake_nemo.embedding_dim
    with pytest.raises(ValidationError, match="truncate"):
        NimClient(fast_http(fake_nemo, "NIM")).embed(["a"], "ns/model", truncate="sideways")


def test_the_contract_accepts_what_the_evaluator_accepts():
    """The Evaluator's own defaults are the contract's: no index model (the query model's), a metric without type."""
    endpoint = {"api_endpoint": {"url": "http://127.0.0.1:9/v1/embeddings", "model_id": "ns/m"}}
    target = {"type": "retriever", "retriever": {"pipeline": {"query_embedding_model": endpoint, "top_k": 5}}}
    config = {"type": "retriever", "tasks": {"t": {"dataset": {"files_url": "file://t/"}, "metrics": {"recall_5": {}}}}}
    ev.JobRequest.model_validate({"config": config, "target": target})
    with pytest.raises(ValidationError, match="top_k"):
        target["retriever"]["pipeline"]["top_k"] = 10_001
        ev.RetrieverTarget.model_validate(target)


def test_pagination_has_the_sdk_s_fields_and_types():
    """One ``Pagination`` serves v1 and v2: the v1 SDK's ``PaginationData`` has the same int fields (Helix's is
    checked against its OpenAPI document in ``test_helix_v2.py``)."""
    sdk = {name: field.annotation for name, field in PaginationData.model_fields.items()}
    ours = {name: field.annotation for name, field in Pagination.model_fields.items()}
    assert ours == sdk
    assert v1.ListPage.model_fields["pagination"].annotation == Pagination | None
