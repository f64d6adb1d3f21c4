"""A hand-written fake NeMo platform on 127.0.0.1 for contract tests of ``embed_ft.nemo``.

It records every request (method, path, query, headers, body), validates request bodies with the v1 wire
contract's request models (``embed_ft/nemo/v1/``: a 422 naming the field, as the embedded platform answers) and
serves answers that parse as the contract's response models; the shapes are those of ``docs/NEMO_CONTRACT.md``:
namespaces (JSON and the Data Store's form-encoded ones),
Entity Store datasets and models, Customizer configs and jobs, Deployment Management (with the
500-on-existing quirk), Evaluator jobs and results, NIM models and embeddings, and just enough of the
Hugging Face protocol under ``/v1/hf`` for ``huggingface_hub`` to create a repo, commit, list, download and
delete (with the real Data Store's empty ``commitUrl`` by default).

Tests script faults per request:
- ``fail_next(n, status=503, method=..., path=...)``: the next n matching requests get that status (no work done);
- ``reset_after_handling(method, path)``: the work is done, then the connection is reset (no response);
- ``delay_after_handling(seconds, method, path)``: the work is done, then the answer comes late.

    with FakeNemo() as fake:
        http = ServiceHTTP(fake.base_url, "Customizer")
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import re
import socket
import struct
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

import pytest
from pydantic import BaseModel, ValidationError

from embed_ft.nemo.http import ServiceHTTP
from embed_ft.nemo.v1 import contract as v1, customization as cust, evaluation as ev

Response = tuple[int, Any, dict[str, str]]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _by_creation(items: list[dict], newest_first: bool) -> list[dict]:
    """Sorted by created_at; insertion order breaks ties (two objects made in the same microsecond)."""
    ordered = [doc for _, doc in sorted(enumerate(items), key=lambda pair: (pair[1]["created_at"], pair[0]))]
    return ordered[::-1] if newest_first else ordered


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> dict[str, str]:
        return {k: v[0] for k, v in parse_qs(self.body.decode()).items()}


@dataclass
class Fault:
    action: str  # "status" | "reset" | "delay"
    method: str | None
    path: str | None  # regex, full match against the path
    times: int
    status: int = 503
    body: Any = None
    seconds: float = 0.0

    def matches(self, method: str, path: str) -> bool:
        return (self.method is None or self.method == method) and (
            self.path is None or re.fullmatch(self.path, path) is not None
        )


@dataclass
class Repo:
    files: dict[str, bytes] = field(default_factory=dict)
    head: str = "0" * 40


class FakeNemo:
    """State, routes and fault scripting; ``start()``/``stop()`` or use as a context manager."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.requests: list[Recorded] = []
        self.faults: list[Fault] = []
        self._stop = threading.Event()
        self._ids = itertools.count(1)
        # Knobs
        self.deployment_exists_status = 500  # the reported quirk; set 409 for a well-behaved server
        self.empty_commit_url = True  # the real Data Store answers "commitUrl": ""
        self.store_commits = True  # False: answer a commit as done but keep nothing (a broken store)
        self.upper_case_statuses = False  # v2 servers spell statuses READY, ERROR, ...
        self.evaluation_results: Any = None  # what GET .../results returns (default: the recorded tasks shape)
        self.embedding_dim = 8
        # State
        self.namespaces: dict[str, dict] = {}
        self.ds_namespaces: dict[str, dict] = {}
        self.datasets: dict[tuple[str, str], dict] = {}
        self.models: dict[tuple[str, str], dict] = {}
        self.served_models: list[str] = []
        self.targets: dict[tuple[str, str], dict] = {}
        self.configs: dict[tuple[str, str], dict] = {}
        self.jobs: dict[str, dict] = {}
        self.eval_jobs: dict[str, dict] = {}
        self.deployments: dict[tuple[str, str], dict] = {}
        self.repos: dict[str, Repo] = {}
        self._routes = self._build_routes()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # Lifecycle
    def start(self) -> FakeNemo:
        fake = self

        class Handler(_Handler):
            pass

        Handler.fake = fake
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._server.block_on_close = False
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(10)

    def __enter__(self) -> FakeNemo:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake first"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # Fault scripting
    def fail_next(
        self, n: int = 1, status: int = 503, method: str | None = None, path: str | None = None, body: Any = None
    ) -> None:
        """The next ``n`` matching requests answer ``status`` without doing anything.

        ``body`` may be a callable taking the :class:`Recorded` request (e.g. to echo a header back).
        """
        self.faults.append(Fault("status", method, path, n, status=status, body=body))

    def reset_after_handling(self, method: str | None = None, path: str | None = None, times: int = 1) -> None:
        self.faults.append(Fault("reset", method, path, times))

    def delay_after_handling(
        self, seconds: float, method: str | None = None, path: str | None = None, times: int = 1
    ) -> None:
        self.faults.append(Fault("delay", method, path, times, seconds=seconds))

    def _take_fault(self, method: str, path: str) -> Fault | None:
        with self.lock:
            for fault in self.faults:
                if fault.times > 0 and fault.matches(method, path):
                    fault.times -= 1
                    return fault
        return None

    # Inspection
    def requests_to(self, method: str, path: str) -> list[Recorded]:
        """Recorded requests with this method whose path fully matches the regex ``path``."""
        with self.lock:
            return [r for r in self.requests if r.method == method and re.fullmatch(path, r.path)]

    def status(self, value: str) -> str:
        return value.upper() if self.upper_case_statuses else value

    def new_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids):022d}"

    # Dispatch
    def handle(self, req: Recorded) -> Response:
        for method, pattern, handler in self._routes:
            if method != req.method:
                continue
            match = re.fullmatch(pattern, req.path)
            if match:
                args = [unquote(g) if g is not None else None for g in match.groups()]
                try:
                    with self.lock:
                        return handler(req, *args)
                except ValidationError as exc:  # the request does not match the contract: FastAPI's 422 shape
                    errors = [{"loc": ["body", *e["loc"]], "msg": e["msg"], "type": e["type"]} for e in exc.errors()]
                    return 422, {"detail": errors}, {}
                except Exception as exc:  # a fake bug or a malformed request: answer, do not drop the socket
                    return 500, {"detail": f"fake server error: {type(exc).__name__}: {exc}"}, {}
        return 404, {"detail": f"no route for {req.method} {req.path}"}, {}

    def _build_routes(self) -> list[tuple[str, str, Callable[..., Response]]]:
        seg = r"([^/]+)"
        hf = r"/v1/hf"
        return [
            # Namespaces
            ("POST", r"/v1/namespaces", self._create_namespace),
            ("GET", rf"/v1/namespaces/{seg}", lambda r, ns: self._get(self.namespaces, ns, "namespace", v1.Namespace)),
            ("POST", r"/v1/datastore/namespaces", self._create_ds_namespace),
            (
                "GET",
                rf"/v1/datastore/namespaces/{seg}",
                lambda r, ns: self._get(self.ds_namespaces, ns, "namespace", v1.DatastoreNamespace),
            ),
            ("DELETE", rf"/v1/datastore/namespaces/{seg}", lambda r, ns: self._delete(self.ds_namespaces, ns)),
            # Entity Store
            ("POST", r"/v1/datasets", self._create_dataset),
            (
                "GET",
                rf"/v1/datasets/{seg}/{seg}",
                lambda r, ns, n: self._get(self.datasets, (ns, n), "dataset", v1.Dataset),
            ),
            ("DELETE", rf"/v1/datasets/{seg}/{seg}", lambda r, ns, n: self._delete(self.datasets, (ns, n))),
            ("GET", r"/v1/models", self._list_models),
            ("GET", rf"/v1/models/{seg}/{seg}", lambda r, ns, n: self._get(self.models, (ns, n), "model", v1.Model)),
            ("DELETE", rf"/v1/models/{seg}/{seg}", lambda r, ns, n: self._delete(self.models, (ns, n))),
            # Customizer
            ("GET", r"/v1/customization/targets", lambda r: self._paginate(r, list(self.targets.values()))),
            (
                "POST",
                r"/v1/customization/targets",
                lambda r: self._create_named(r, self.targets, "target", cust.TargetRequest),
            ),
            (
                "GET",
                rf"/v1/customization/targets/{seg}/{seg}",
                lambda r, ns, n: self._get(self.targets, (ns, n), "target", cust.Target),
            ),
            (
                "POST",
                r"/v1/customization/configs",
                lambda r: self._create_named(r, self.configs, "config", cust.ConfigRequest),
            ),
            (
                "GET",
                rf"/v1/customization/configs/{seg}/{seg}",
                lambda r, ns, n: self._get(self.configs, (ns, n), "config", cust.Config),
            ),
            ("POST", r"/v1/customization/jobs", self._create_customization_job),
            ("GET", r"/v1/customization/jobs", lambda r: self._list_jobs(r, self.jobs)),
            (
                "GET",
                rf"/v1/customization/jobs/{seg}",
                lambda r, i: self._get(self.jobs, i, "customization job", cust.Job),
            ),
            ("GET", rf"/v1/customization/jobs/{seg}/status", self._customization_status),
            ("POST", rf"/v1/customization/jobs/{seg}/cancel", lambda r, i: self._cancel(self.jobs, i, cust.Job)),
            # Deployment Management
            ("POST", r"/v1/deployment/model-deployments", self._create_deployment),
            ("GET", r"/v1/deployment/model-deployments", lambda r: self._paginate(r, list(self.deployments.values()))),
            (
                "GET",
                rf"/v1/deployment/model-deployments/{seg}/{seg}",
                lambda r, ns, n: self._get(self.deployments, (ns, n), "deployment", v1.ModelDeployment),
            ),
            (
                "DELETE",
                rf"/v1/deployment/model-deployments/{seg}/{seg}",
                lambda r, ns, n: self._delete(self.deployments, (ns, n)),
            ),
            # Evaluator
            ("POST", r"/v1/evaluation/jobs", self._create_evaluation_job),
            ("GET", r"/v1/evaluation/jobs", lambda r: self._list_jobs(r, self.eval_jobs)),
            ("GET", rf"/v1/evaluation/jobs/{seg}", lambda r, i: self._get(self.eval_jobs, i, "evaluation job", ev.Job)),
            ("POST", rf"/v1/evaluation/jobs/{seg}/cancel", lambda r, i: self._cancel(self.eval_jobs, i, ev.Job)),
            ("GET", rf"/v1/evaluation/jobs/{seg}/results", self._evaluation_results),
            # NIM
            ("POST", r"/v1/embeddings", self._embeddings),
            # Hugging Face protocol (Data Store)
            ("POST", rf"{hf}/api/repos/create", self._hf_create_repo),
            ("DELETE", rf"{hf}/api/repos/delete", self._hf_delete_repo),
            ("POST", rf"{hf}/api/datasets/{seg}/{seg}/preupload/main", self._hf_preupload),
            ("POST", rf"{hf}/api/datasets/{seg}/{seg}/commit/main", self._hf_commit),
            ("GET", rf"{hf}/api/datasets/{seg}/{seg}/tree/main(?:/(.*))?", self._hf_tree),
            ("GET", rf"{hf}/api/datasets/{seg}/{seg}(?:/revision/main)?", self._hf_repo_info),
            ("HEAD", rf"{hf}/datasets/{seg}/{seg}/resolve/main/(.+)", self._hf_resolve),
            ("GET", rf"{hf}/datasets/{seg}/{seg}/resolve/main/(.+)", self._hf_resolve),
        ]

    # The v1 contract: requests validated, answers checked
    @staticmethod
    def _request(req: Recorded, model: type[BaseModel]) -> dict[str, Any]:
        """The JSON body, once it validates as the contract's request ``model`` (else a 422 naming the field)."""
        body = req.json()
        model.model_validate(body)
        return body

    @staticmethod
    def _serve(model: type[BaseModel], doc: dict[str, Any], status: int = 200) -> Response:
        """A 2xx answer; it must parse as the contract's response ``model`` (a fake bug answers 500)."""
        try:
            model.model_validate(doc)
        except ValidationError as exc:
            raise AssertionError(f"the fake's answer is not a v1 {model.__name__}: {exc}") from None
        return status, doc, {}

    # Generic handlers
    def _get(self, table: dict, key: Any, what: str, model: type[BaseModel]) -> Response:
        if key not in table:
            name = "/".join(key) if isinstance(key, tuple) else key
            return 404, {"detail": f"{what} {name} not found"}, {}
        return self._serve(model, table[key])

    def _delete(self, table: dict, key: Any) -> Response:
        if table.pop(key, None) is None:
            return 404, {"detail": "not found"}, {}
        return 200, {"message": "deleted"}, {}

    def _paginate(self, req: Recorded, items: list[dict]) -> Response:
        page = int(req.query.get("page", 1))
        size = int(req.query.get("page_size", 10))
        total_pages = max(1, -(-len(items) // size))
        chunk = items[(page - 1) * size : page * size]
        pagination = {
            "page": page,
            "page_size": size,
            "current_page_size": len(chunk),
            "total_pages": total_pages,
            "total_results": len(items),
        }
        return 200, {"object": "list", "data": chunk, "pagination": pagination}, {}

    def _create_named(self, req: Recorded, table: dict, what: str, model: type[BaseModel]) -> Response:
        body = self._request(req, model)
        key = (body["namespace"], body["name"])
        if key in table:
            return 409, {"detail": f"{what} {key[0]}/{key[1]} already exists"}, {}
        table[key] = {**body, "id": self.new_id(what), "created_at": _now()}
        return 200, table[key], {}

    # Namespaces
    def _create_namespace(self, req: Recorded) -> Response:
        ns = self._request(req, v1.NamespaceRequest)["id"]
        if ns in self.namespaces:
            return 409, {"detail": f"namespace {ns} already exists"}, {}
        self.namespaces[ns] = {"id": ns, "created_at": _now(), "description": None, "project": None}
        return self._serve(v1.Namespace, self.namespaces[ns], 201)

    def _create_ds_namespace(self, req: Recorded) -> Response:
        if "json" in req.headers.get("content-type", ""):
            return 422, {"detail": "expected a form-encoded body with field 'namespace'"}, {}
        ns = req.form().get("namespace")
        if not ns:
            return 422, {"detail": "field 'namespace' is required"}, {}
        v1.DatastoreNamespaceForm.model_validate(req.form())
        if ns in self.ds_namespaces:
            return 409, {"detail": f"namespace {ns} already exists"}, {}
        self.ds_namespaces[ns] = {"namespace": ns, "created_at": _now(), "updated_at": _now()}
        return self._serve(v1.DatastoreNamespace, self.ds_namespaces[ns], 201)

    # Entity Store
    def _create_dataset(self, req: Recorded) -> Response:
        return self._create_named(req, self.datasets, "dataset", v1.DatasetRequest)

    def _list_models(self, req: Recorded) -> Response:
        namespace = req.query.get("filter[namespace]")
        items = _by_creation(
            [m for m in self.models.values() if namespace is None or m["namespace"] == namespace],
            newest_first=req.query.get("sort", "").startswith("-"),
        )
        items += [
            {"id": name, "object": "model", "owned_by": "fake"} for name in self.served_models if namespace is None
        ]
        return self._paginate(req, items)

    def add_model(self, namespace: str, name: str, **extra: Any) -> dict:
        doc = {"name": name, "namespace": namespace, "created_at": _now(), **extra}
        self.models[(namespace, name)] = doc
        return doc

    # Customizer
    def _create_customization_job(self, req: Recorded) -> Response:
        body = self._request(req, cust.JobRequest)
        job_id = self.new_id("cust")
        output = f"{body['output_model']}@{job_id}"
        ns, name = output.split("/", 1)
        self.jobs[job_id] = {
            **body,
            "id": job_id,
            "created_at": _now(),
            "status": self.status("created"),
            "output_model": output,
            "config_snapshot": self.configs.get(tuple(body["config"].split("/", 1)), {}),
            "status_details": {"status_logs": []},
        }
        self.add_model(
            ns, name, base_model=body["config"], peft={"finetuning_type": body["hyperparameters"]["finetuning_type"]}
        )
        return self._serve(cust.Job, self.jobs[job_id])

    def _list_jobs(self, req: Recorded, table: dict) -> Response:
        items = _by_creation(list(table.values()), newest_first=req.query.get("sort", "-").startswith("-"))
        return self._paginate(req, items)

    def _customization_status(self, req: Recorded, job_id: str) -> Response:
        job = self.jobs.get(job_id)
        if job is None:
            return 404, {"detail": f"customization job {job_id} not found"}, {}
        return self._serve(
            cust.JobStatus,
            {
                "status": job["status"],
                "percentage_done": 100.0 if job["status"].lower() == "completed" else 0.0,
                "epochs_completed": 0,
                "steps_completed": 0,
                "steps_per_epoch": 254,
                "train_loss": None,
                "val_loss": None,
                "metrics": {"keys": ["train_loss", "val_loss"], "metrics": {"train_loss": [], "val_loss": []}},
                "status_logs": job["status_details"]["status_logs"],
            },
        )

    def _cancel(self, table: dict, job_id: str, model: type[BaseModel]) -> Response:
        job = table.get(job_id)
        if job is None:
            return 404, {"detail": f"job {job_id} not found"}, {}
        if job["status"].lower() in ("completed", "failed", "cancelled"):
            return 409, {"detail": f"job {job_id} is already {job['status']}"}, {}
        job["status"] = self.status("cancelled")
        return self._serve(model, job)

    def set_job_status(self, job_id: str, status: str, detail: str | None = None) -> None:
        with self.lock:
            job = self.jobs.get(job_id) or self.eval_jobs[job_id]
            job["status"] = self.status(status)
            if detail is not None:
                job.setdefault("status_details", {}).setdefault("status_logs", []).append(
                    {"updated_at": _now(), "message": status, "detail": detail}
                )

    # Deployment Management
    def _create_deployment(self, req: Recorded) -> Response:
        body = self._request(req, v1.ModelDeploymentRequest)
        key = (body["namespace"], body["name"])
        if key in self.deployments:
            status = self.deployment_exists_status
            detail = "Internal Server Error" if status == 500 else f"deployment {key[0]}/{key[1]} already exists"
            return status, {"detail": detail}, {}
        self.deployments[key] = {
            **body,
            "created_at": _now(),
            "deployed": False,
            "url": "",
            "models": [],
            "status_details": {"status": self.status("pending"), "description": "image pulling"},
        }
        return self._serve(v1.ModelDeployment, self.deployments[key])

    def set_deployment_status(self, namespace: str, name: str, status: str) -> None:
        with self.lock:
            doc = self.deployments[(namespace, name)]
            doc["status_details"]["status"] = self.status(status)
            doc["deployed"] = status.lower() == "ready"

    # Evaluator
    def _create_evaluation_job(self, req: Recorded) -> Response:
        body = self._request(req, ev.JobRequest)
        job_id = self.new_id("eval")
        self.eval_jobs[job_id] = {
            **body,
            "id": job_id,
            "created_at": _now(),
            "status": self.status("created"),
            "status_details": {"progress": 0, "message": None},
        }
        return self._serve(ev.Job, self.eval_jobs[job_id])

    def _evaluation_results(self, req: Recorded, job_id: str) -> Response:
        if job_id not in self.eval_jobs:
            return 404, {"detail": f"evaluation job {job_id} not found"}, {}
        if self.evaluation_results is not None:  # a test's own shape (other server versions: groups, a list)
            return 200, self.evaluation_results, {}
        return self._serve(ev.Results, tasks_shape_results(job_id))

    # NIM
    def _embeddings(self, req: Recorded) -> Response:
        body = self._request(req, v1.EmbeddingsRequest)
        if body.get("model") not in self.served_models:
            return 404, {"detail": f"model {body.get('model')} not found"}, {}
        data = []
        for index, text in enumerate(body["input"]):
            digest = hashlib.sha256(f"{body['input_type']}:{text}".encode()).digest()
            vector = [(digest[i % len(digest)] - 128) / 128.0 for i in range(self.embedding_dim)]
            if body.get("encoding_format") == "base64":
                embedding: Any = base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()
            else:
                embedding = vector
            data.append({"index": index, "embedding": embedding, "object": "embedding"})
        answer = {"object": "list", "data": data, "model": body["model"], "usage": {"prompt_tokens": 0}}
        return self._serve(v1.EmbeddingsResponse, answer)

    # Hugging Face protocol
    def _hf_create_repo(self, req: Recorded) -> Response:
        body = self._request(req, v1.RepoRequest)
        repo_id = f"{body['organization']}/{body['name']}"
        if repo_id in self.repos:
            return 409, {"error": "You already created this dataset repo"}, {}
        self.repos[repo_id] = Repo()
        return self._serve(v1.RepoCreated, {"url": f"{self.base_url}/v1/hf/datasets/{repo_id}", "name": repo_id})

    def _hf_delete_repo(self, req: Recorded) -> Response:
        body = self._request(req, v1.RepoRequest)
        repo_id = f"{body['organization']}/{body['name']}"
        if self.repos.pop(repo_id, None) is None:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        return 200, {}, {}

    def _repo(self, ns: str, name: str) -> Repo | None:
        return self.repos.get(f"{ns}/{name}")

    def _hf_preupload(self, req: Recorded, ns: str, name: str) -> Response:
        if self._repo(ns, name) is None:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        files = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in req.json()["files"]]
        return 200, {"files": files, "commitOid": self._repo(ns, name).head}, {}

    def _hf_commit(self, req: Recorded, ns: str, name: str) -> Response:
        repo = self._repo(ns, name)
        if repo is None:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        for line in req.body.splitlines():
            item = json.loads(line)
            if item["key"] == "file" and self.store_commits:
                repo.files[item["value"]["path"]] = base64.b64decode(item["value"]["content"])
            elif item["key"] == "lfsFile":
                return 400, {"error": "this fake only accepts regular uploads"}, {}
        repo.head = hashlib.sha1(req.body).hexdigest()
        url = "" if self.empty_commit_url else f"{self.base_url}/v1/hf/datasets/{ns}/{name}/commit/{repo.head}"
        return 200, {"commitUrl": url, "commitOid": repo.head}, {}

    def _hf_tree(self, req: Recorded, ns: str, name: str, sub: str | None) -> Response:
        repo = self._repo(ns, name)
        if repo is None:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        entries, dirs = [], set()
        for path, content in sorted(repo.files.items()):
            if sub and not path.startswith(sub.rstrip("/") + "/"):
                continue
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
            entries.append(
                {"type": "file", "path": path, "size": len(content), "oid": hashlib.sha1(content).hexdigest()}
            )
        entries += [{"type": "directory", "path": d, "size": 0, "oid": "0" * 40} for d in sorted(dirs)]
        return 200, entries, {}

    def _hf_repo_info(self, req: Recorded, ns: str, name: str) -> Response:
        repo = self._repo(ns, name)
        if repo is None:
            return 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
        return (
            200,
            {
                "id": f"{ns}/{name}",
                "_id": f"{ns}/{name}",
                "sha": repo.head,
                "private": False,
                "siblings": [{"rfilename": p} for p in sorted(repo.files)],
                "lastModified": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            },
            {},
        )

    def _hf_resolve(self, req: Recorded, ns: str, name: str, path: str) -> Response:
        repo = self._repo(ns, name)
        if repo is None or path not in repo.files:
            return 404, {"error": "Entry not found"}, {"X-Error-Code": "EntryNotFound"}
        content = repo.files[path]
        headers = {"ETag": f'"{hashlib.sha1(content).hexdigest()}"', "X-Repo-Commit": repo.head}
        return 200, content, headers


@pytest.fixture
def fake_nemo():
    """A started :class:`FakeNemo`, stopped after the test."""
    with FakeNemo() as fake:
        yield fake


def fast_http(fake: FakeNemo, service: str, **overrides: Any) -> ServiceHTTP:
    """A client of the fake with short timeouts and near-zero backoff (tests stay fast)."""
    options: dict[str, Any] = {"timeout": (2.0, 5.0), "retries": 2, "backoff": 0.01, **overrides}
    return ServiceHTTP(fake.base_url, service, **options)


def tasks_shape_results(job_id: str = "eval-1", task: str = "my-beir-task") -> dict:
    """The recorded results shape (Aug 2025 notebook): ``tasks`` / ``retriever.`` metric keys / ``scores``."""
    values = {"recall_5": 0.1764, "ndcg_cut_5": 0.1973, "recall_10": 0.2533, "ndcg_cut_10": 0.2393}
    return {
        "job": job_id,
        "id": "evaluation_result-1",
        "files_url": f"hf://datasets/evaluation-results/{job_id}",
        "tasks": {
            task: {"metrics": {f"retriever.{m}": {"scores": {m: {"value": v, "stats": {}}}} for m, v in values.items()}}
        },
    }


class _Handler(BaseHTTPRequestHandler):
    fake: FakeNemo
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _read_body(self) -> bytes:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().strip().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        split = urlsplit(self.path)
        req = Recorded(
            method=self.command,
            path=split.path,
            query={k: v[0] for k, v in parse_qs(split.query).items()},
            headers={k.lower(): v for k, v in self.headers.items()},
            body=self._read_body(),
        )
        fake = self.fake
        with fake.lock:
            fake.requests.append(req)
        fault = fake._take_fault(req.method, req.path)
        if fault is not None and fault.action == "status":
            body = fault.body(req) if callable(fault.body) else fault.body
            self._respond(fault.status, body if body is not None else {"detail": f"injected {fault.status}"}, {})
            return
        status, body, headers = fake.handle(req)
        if fault is not None and fault.action == "reset":
            self._reset()
            return
        if fault is not None and fault.action == "delay":
            fake._stop.wait(fault.seconds)
        try:
            self._respond(status, body, headers)
        except OSError:  # the client gave up (timeout): nothing to answer
            self.close_connection = True

    def _respond(self, status: int, body: Any, headers: dict[str, str]) -> None:
        if isinstance(body, bytes):
            payload, content_type = body, "application/octet-stream"
        else:
            payload, content_type = json.dumps(body).encode(), "application/json"
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)

    def _reset(self) -> None:
        # SO_LINGER 0 makes close() send RST: the client sees a reset after the server did the work.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True
        self.connection.close()

    def finish(self) -> None:
        try:
            super().finish()
        except OSError:
            pass

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _dispatch
