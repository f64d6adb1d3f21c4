"""Every v1 route embed-ft speaks or serves, with its request and response models: the table that
``docs/NEMO_CONTRACT.md`` is checked against (``test_nemo_contract_v1.py``: each route the page documents is here,
and the embedded platform serves each one here).

``None`` as the request model: the route takes no JSON body (a GET, a DELETE, a cancel) or one that is not ours
(the Hugging Face protocol's preupload and commit, which ``huggingface_hub`` writes). ``None`` as the response
model: the answer is not a JSON object the clients parse (a file, a 204, the Hub's tree listing).
"""

from __future__ import annotations

from typing import NamedTuple

from pydantic import BaseModel

from . import contract as c, customization as cust, evaluation as ev


class Route(NamedTuple):
    method: str
    path: str  # FastAPI-style template under the base: /v1/models/{namespace}/{name}
    request: type[BaseModel] | None
    response: type[BaseModel] | None
    base: str = "NEMO_URL"  # the base URL the path is appended to: NEMO_URL, NDS_URL or NIM_URL


NDS = "NDS_URL"
NIM = "NIM_URL"


NS = "{namespace}/{name}"
HF_REPO = "/v1/hf/api/datasets/{namespace}/{name}"
ROUTES: tuple[Route, ...] = (
    # Entity Store
    Route("POST", "/v1/namespaces", c.NamespaceRequest, c.Namespace),
    Route("GET", "/v1/namespaces", None, c.ListPage[c.Namespace]),
    Route("GET", "/v1/namespaces/{namespace}", None, c.Namespace),
    Route("DELETE", "/v1/namespaces/{namespace}", None, c.DeleteResponse),
    Route("POST", "/v1/datasets", c.DatasetRequest, c.Dataset),
    Route("GET", "/v1/datasets", None, c.ListPage[c.Dataset]),
    Route("GET", f"/v1/datasets/{NS}", None, c.Dataset),
    Route("DELETE", f"/v1/datasets/{NS}", None, c.DeleteResponse),
    Route("POST", "/v1/models", c.ModelRequest, c.Model),
    Route("GET", "/v1/models", None, c.ListPage[c.Model]),
    Route("GET", f"/v1/models/{NS}", None, c.Model),
    Route("DELETE", f"/v1/models/{NS}", None, c.DeleteResponse),
    # Data Store: namespaces (form-encoded) and the Hugging Face protocol under /v1/hf
    Route("POST", "/v1/datastore/namespaces", c.DatastoreNamespaceForm, c.DatastoreNamespace, NDS),
    Route("GET", "/v1/datastore/namespaces/{namespace}", None, c.DatastoreNamespace, NDS),
    Route("DELETE", "/v1/datastore/namespaces/{namespace}", None, None, NDS),
    Route("POST", "/v1/hf/api/repos/create", c.RepoRequest, c.RepoCreated, NDS),
    Route("DELETE", "/v1/hf/api/repos/delete", c.RepoRequest, None, NDS),
    # ... the rest of the Hub protocol is huggingface_hub's own (its bodies and answers are not ours to model)
    Route("GET", f"{HF_REPO}", None, None, NDS),
    Route("POST", f"{HF_REPO}/preupload/{{revision}}", None, None, NDS),
    Route("POST", f"{HF_REPO}/commit/{{revision}}", None, None, NDS),
    Route("GET", f"{HF_REPO}/tree/{{revision}}", None, None, NDS),
    Route("GET", "/v1/hf/datasets/{namespace}/{name}/resolve/{revision}/{path}", None, None, NDS),
    Route("HEAD", "/v1/hf/datasets/{namespace}/{name}/resolve/{revision}/{path}", None, None, NDS),
    # Customizer
    Route("POST", "/v1/customization/targets", cust.TargetRequest, cust.Target),
    Route("GET", "/v1/customization/targets", None, c.ListPage[cust.Target]),
    Route("GET", f"/v1/customization/targets/{NS}", None, cust.Target),
    Route("PATCH", f"/v1/customization/targets/{NS}", cust.TargetPatch, cust.Target),
    Route("DELETE", f"/v1/customization/targets/{NS}", None, None),
    Route("POST", "/v1/customization/configs", cust.ConfigRequest, cust.Config),
    Route("GET", "/v1/customization/configs", None, c.ListPage[cust.Config]),
    Route("GET", f"/v1/customization/configs/{NS}", None, cust.Config),
    Route("DELETE", f"/v1/customization/configs/{NS}", None, None),
    Route("POST", "/v1/customization/jobs", cust.JobRequest, cust.Job),
    Route("GET", "/v1/customization/jobs", None, c.ListPage[cust.Job]),
    Route("GET", "/v1/customization/jobs/{job_id}", None, cust.Job),
    Route("GET", "/v1/customization/jobs/{job_id}/status", None, cust.JobStatus),
    Route("POST", "/v1/customization/jobs/{job_id}/cancel", None, cust.Job),
    Route("GET", "/v1/customization/jobs/{job_id}/container-logs", None, cust.JobLogs),
    # Deployment Management
    Route("POST", "/v1/deployment/configs", c.DeploymentConfigRequest, None),
    Route("GET", f"/v1/deployment/configs/{NS}", None, None),
    Route("POST", "/v1/deployment/model-deployments", c.ModelDeploymentRequest, c.ModelDeployment),
    Route("GET", "/v1/deployment/model-deployments", None, c.ListPage[c.ModelDeployment]),
    Route("GET", f"/v1/deployment/model-deployments/{NS}", None, c.ModelDeployment),
    Route("DELETE", f"/v1/deployment/model-deployments/{NS}", None, None),
    # Evaluator
    Route("POST", "/v1/evaluation/configs", ev.RetrieverConfig, None),
    Route("POST", "/v1/evaluation/targets", ev.RetrieverTarget, None),
    Route("POST", "/v1/evaluation/jobs", ev.JobRequest, ev.Job),
    Route("GET", "/v1/evaluation/jobs", None, c.ListPage[ev.Job]),
    Route("GET", "/v1/evaluation/jobs/{job_id}", None, ev.Job),
    Route("POST", "/v1/evaluation/jobs/{job_id}/cancel", None, ev.Job),
    Route("DELETE", "/v1/evaluation/jobs/{job_id}", None, None),
    Route("GET", "/v1/evaluation/jobs/{job_id}/results", None, ev.Results),
    Route("GET", "/v1/evaluation/results", None, c.ListPage[ev.Results]),
    Route("GET", "/v1/evaluation/results/{result_id}", None, ev.Results),
    # NIM (under NIM_URL)
    Route("POST", "/v1/embeddings", c.EmbeddingsRequest, c.EmbeddingsResponse, NIM),
    Route("GET", "/v1/models", None, c.ServedModels, NIM),
    Route("GET", "/v1/health/ready", None, None, NIM),
    Route("GET", "/v1/health/live", None, None, NIM),
)
