"""An evaluation whose embeddings endpoint never answers (issue 24, F11): it must neither hold the evaluation queue
nor ignore a cancel.

The stalled endpoint is a real TCP server on 127.0.0.1 that accepts connections, reads the request and never
answers; the working one is the evaluator tests' hashed bag-of-words server. The platform runs in-process over its
HTTP API (FastAPI's TestClient). Waits are bounded polls on a condition, never a timed assertion.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from embed_ft.platform.app import create_app
from embed_ft.platform.settings import PlatformSettings
from embed_ft_tests.home_probes import wait_until as probe_wait_until
from embed_ft_tests.test_platform_evaluator import fake_embeddings_server, job_body, write_beir

TERMINAL = ("completed", "failed", "cancelled")
BOUND_S = 120.0  # far below the default request timeout (300 s): a job ended within it was not waited out


class StalledEndpoint:
    """Accepts HTTP connections and reads them, but never answers; counts the requests that arrived."""

    def __init__(self) -> None:
        self.server = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.server.getsockname()[1]}/v1/embeddings"
        self.requests = 0
        self.held: list[socket.socket] = []
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                connection, _ = self.server.accept()
            except OSError:
                return
            self.held.append(connection)
            if connection.recv(65536):
                self.requests += 1

    def close(self) -> None:
        self._closed.set()
        self.server.close()
        for connection in self.held:
            connection.close()


@contextmanager
def stalled_endpoint() -> Iterator[StalledEndpoint]:
    endpoint = StalledEndpoint()
    try:
        yield endpoint
    finally:
        endpoint.close()


def wait_until(check, what: str, bound_s: float = BOUND_S):
    return probe_wait_until(check, what, bound_s, interval_s=0.05)


def job(client: TestClient, job_id: str) -> dict:
    return client.get(f"/v1/evaluation/jobs/{job_id}").json()


def ended(client: TestClient, job_id: str) -> dict:
    return wait_until(
        lambda: (doc := job(client, job_id))["status"] in TERMINAL and doc, f"evaluation job {job_id} to end"
    )


@contextmanager
def platform(tmp_path: Path, **settings: float) -> Iterator[TestClient]:
    write_beir(tmp_path / "beir" / "tiny")
    options = PlatformSettings(home=tmp_path / "home", beir_root=tmp_path / "beir", **settings)
    with TestClient(create_app(options)) as client:
        yield client


@pytest.mark.slow  # 6 s: waits out a stalled endpoint
def test_f11_cancel_ends_a_job_stalled_on_its_endpoint_and_the_queue_goes_on(tmp_path):
    """F11: cancel answered 200 but the job kept waiting on the endpoint (10 minutes), then ended ``failed``, and
    every later evaluation waited behind it. Now it ends ``cancelled`` at once and the next job runs."""
    with stalled_endpoint() as stalled, fake_embeddings_server() as (working_url, _), platform(tmp_path) as client:
        stuck = client.post("/v1/evaluation/jobs", json=job_body(stalled.url)).json()["id"]
        wait_until(lambda: stalled.requests, "the stalled endpoint to receive a request")
        queued = client.post("/v1/evaluation/jobs", json=job_body(working_url)).json()["id"]
        assert job(client, queued)["status"] == "pending", "the second job did not wait in the queue"
        cancel = client.post(f"/v1/evaluation/jobs/{stuck}/cancel")
        assert cancel.status_code == 200, cancel.text
        doc = ended(client, stuck)
        assert doc["status"] == "cancelled", f"ended {doc['status']}: {doc['status_details'].get('message')}"
        after = ended(client, queued)
        assert after["status"] == "completed", after["status_details"]
        assert client.get(f"/v1/evaluation/jobs/{stuck}/results").status_code == 409


def test_f11_a_stalled_endpoint_times_out_and_does_not_hold_the_queue(tmp_path):
    """F11: with nobody to cancel it, a job on a stalled endpoint ends ``failed`` after the request timeout, naming
    it, and the job queued behind it completes."""
    with (
        stalled_endpoint() as stalled,
        fake_embeddings_server() as (working_url, _),
        platform(tmp_path, evaluation_request_timeout_s=2.0) as client,
    ):
        stuck = client.post("/v1/evaluation/jobs", json=job_body(stalled.url)).json()["id"]
        queued = client.post("/v1/evaluation/jobs", json=job_body(working_url)).json()["id"]
        doc = ended(client, stuck)
        assert doc["status"] == "failed", doc["status_details"]
        assert "timed out" in doc["status_details"]["message"].lower(), doc["status_details"]["message"]
        assert stalled.requests >= 1
        after = ended(client, queued)
        assert after["status"] == "completed", after["status_details"]
