"""Recovery of a damaged home (issue 24: F1's start-up half, F10, F14): a start-up never dies on one bad record.

Rows and record files are damaged by hand in the home, as a crash, a disk error or an older version leaves them;
then the real platform starts on that home (``platform_server.running_platform``, loopback HTTP only) and must
serve the rest, name what it set aside (log and ``embed-ft platform status``) and let it be removed or replaced.
"""

from __future__ import annotations

import base64
import json
import logging
import sqlite3
from pathlib import Path

import requests
from click.testing import CliRunner

from embed_ft.platform.cli import platform_group
from embed_ft_tests.platform_customizer_helpers import TIMEOUT
from embed_ft_tests.platform_server import running_platform

NS = "recover-ns"
STAMP = "2030-01-01T00:00:00+00:00"
NDJSON = {"Content-Type": "application/x-ndjson"}


def put_row(home: Path, kind: str, id_: str, data: object, namespace: str | None = None) -> None:
    """Write one row into the home's state file as a crash or an older version could have left it."""
    with sqlite3.connect(home / "state.sqlite3") as db:
        db.execute(
            "INSERT OR REPLACE INTO entities VALUES (?,?,?,?,?,?,?)",
            (kind, id_, namespace, id_.split("/")[-1], data, STAMP, STAMP),
        )


def deep_json(depth: int) -> str:
    return "[" * depth + "]" * depth


def status_text(home: Path) -> str:
    result = CliRunner().invoke(platform_group, ["status", "--home", str(home)])
    return result.output


def listed(base_url: str, path: str) -> list[dict]:
    response = requests.get(f"{base_url}{path}", params={"page_size": 1000}, timeout=TIMEOUT)
    assert response.status_code == 200, f"GET {path}: {response.status_code} {response.text[:300]}"
    return response.json()["data"]


def commit(base_url: str, name: str, files: dict[str, bytes]) -> dict:
    lines = [json.dumps({"key": "header", "value": {"summary": "test"}})]
    lines += [
        json.dumps(
            {"key": "file", "value": {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"}}
        )
        for path, data in files.items()
    ]
    response = requests.post(
        f"{base_url}/v1/hf/api/datasets/{NS}/{name}/commit/main",
        data="\n".join(lines) + "\n",
        headers=NDJSON,
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


def create_repo(base_url: str, name: str) -> None:
    response = requests.post(
        f"{base_url}/v1/hf/api/repos/create",
        json={"name": name, "organization": NS, "type": "dataset"},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text


def delete_repo(base_url: str, name: str) -> requests.Response:
    return requests.delete(
        f"{base_url}/v1/hf/api/repos/delete",
        json={"name": name, "organization": NS, "type": "dataset"},
        timeout=TIMEOUT,
    )


def test_f1_start_up_survives_deep_rows_and_rows_the_repair_pattern_matches(tmp_path, caplog):
    """F1: a model row nested ~1,000 deep (its id ``sample100`` matches the repair pattern too) made every later
    start-up die with RecursionError. Now the start-up sets deep rows aside, names them, and serves the rest."""
    with running_platform(tmp_path) as (base_url, settings):
        requests.post(f"{base_url}/v1/namespaces", json={"id": NS}, timeout=TIMEOUT).raise_for_status()
        home = settings.home
    deep = deep_json(990)  # as deep as Python's reader goes when nothing else is on the stack
    put_row(
        home,
        "model",
        f"{NS}/sample100",
        f'{{"name": "sample100", "namespace": "{NS}", "custom_fields": {{"x": {deep}}}}}',
        NS,
    )
    put_row(home, "namespace", "deep-ns", f'{{"id": "deep-ns", "description": {deep_json(200)}}}')
    caplog.set_level(logging.ERROR)
    with running_platform(tmp_path) as (base_url, _):
        assert NS in [d["id"] for d in listed(base_url, "/v1/namespaces")]
        assert "deep-ns" not in [d["id"] for d in listed(base_url, "/v1/namespaces")]
        assert "sample100" not in [m["name"] for m in listed(base_url, "/v1/models")]
        again = requests.post(f"{base_url}/v1/namespaces", json={"id": "deep-ns"}, timeout=TIMEOUT)
        assert again.status_code in (200, 201), f"the set-aside name is not free again: {again.text[:300]}"
    logged = caplog.text
    for name in ("sample100", "deep-ns"):
        assert name in logged, f"the log does not name {name}: {logged[-800:]}"
    shown = status_text(home)
    for name in (f"{NS}/sample100", "deep-ns"):
        assert name in shown, f"platform status does not name {name}: {shown}"


def test_f10_truncated_and_non_object_rows_are_no_ghosts_and_do_not_stop_start_up(tmp_path):
    """F10: a truncated row was a ghost (GET/DELETE 404, create 409); a job row that is valid JSON but not an
    object stopped start-up. Now both are set aside and named; the name can be created again."""
    with running_platform(tmp_path) as (base_url, settings):
        requests.post(f"{base_url}/v1/namespaces", json={"id": NS}, timeout=TIMEOUT).raise_for_status()
        home = settings.home
    put_row(home, "namespace", "ghost", '{"id": "ghost", "description": "cut off mid-wri')
    put_row(home, "customization_job", "cust-NotAnObjectAtAll00000", "[1, 2, 3]")
    put_row(home, "evaluation_job", "eval-JustAStringInTheRow000", '"running"')
    put_row(
        home, "model_deployment", f"{NS}/odd", f'{{"name": "odd", "namespace": "{NS}", "status_details": "ready"}}', NS
    )
    with running_platform(tmp_path) as (base_url, _):
        assert NS in [d["id"] for d in listed(base_url, "/v1/namespaces")]
        for path in ("/v1/customization/jobs", "/v1/evaluation/jobs", "/v1/deployment/model-deployments"):
            listed(base_url, path)
        assert requests.get(f"{base_url}/v1/namespaces/ghost", timeout=TIMEOUT).status_code == 404
        created = requests.post(f"{base_url}/v1/namespaces", json={"id": "ghost"}, timeout=TIMEOUT)
        assert created.status_code in (200, 201), f"a truncated row is a ghost: create answered {created.text[:300]}"
        assert requests.get(f"{base_url}/v1/namespaces/ghost", timeout=TIMEOUT).status_code == 200
    shown = status_text(home)
    for name in ("ghost", "cust-NotAnObjectAtAll00000", "eval-JustAStringInTheRow000", f"{NS}/odd"):
        assert name in shown, f"platform status does not name {name}: {shown}"


def test_f10_damaged_repo_records_are_named_and_removable(tmp_path):
    """F10: a truncated ``repo.json`` or an empty head manifest made every route of the repo 500 and the repo
    undeletable, with no message naming the file. Now: 409 naming the file, named at start-up, deletable."""
    with running_platform(tmp_path) as (base_url, settings):
        requests.post(f"{base_url}/v1/datastore/namespaces", data={"namespace": NS}, timeout=TIMEOUT)
        for name in ("cut", "empty", "fine"):
            create_repo(base_url, name)
            commit(base_url, name, {"a.txt": b"alpha", "b/c.txt": b"gamma"})
        home = settings.home
    repos = home / "datastore" / "datasets" / NS
    meta = repos / "cut" / "repo.json"
    meta.write_bytes(meta.read_bytes()[: len(meta.read_bytes()) // 2])
    head = json.loads((repos / "empty" / "repo.json").read_text())["head"]
    (repos / "empty" / "commits" / f"{head}.json").write_text("")
    with running_platform(tmp_path) as (base_url, _):
        cut = requests.get(f"{base_url}/v1/hf/api/datasets/{NS}/cut", timeout=TIMEOUT)
        assert cut.status_code == 409, f"{cut.status_code}: {cut.text[:300]}"
        assert "repo.json" in cut.text, cut.text[:300]
        empty = requests.get(f"{base_url}/v1/hf/api/datasets/{NS}/empty/tree/main", timeout=TIMEOUT)
        assert empty.status_code == 409, f"{empty.status_code}: {empty.text[:300]}"
        assert f"{head}.json" in empty.text, empty.text[:300]
        fine = requests.get(f"{base_url}/v1/hf/datasets/{NS}/fine/resolve/main/b/c.txt", timeout=TIMEOUT)
        assert fine.status_code == 200, fine.text[:300]
        assert fine.content == b"gamma"
        shown = status_text(home)
        for name in ("cut", "empty"):
            assert f"datasets/{NS}/{name}" in shown, shown
        for name in ("cut", "empty"):
            deleted = delete_repo(base_url, name)
            assert deleted.status_code == 200, f"a damaged repo cannot be deleted: {deleted.text[:300]}"
        create_repo(base_url, "cut")
        commit(base_url, "cut", {"new.txt": b"new"})
    with running_platform(tmp_path) as (base_url, _):
        assert f"datasets/{NS}" not in status_text(home), "the removed repos are still named"


def test_f14_snapshots_no_commit_names_are_removed_at_start_up(tmp_path):
    """F14: kill -9 between a snapshot's rename and its commit point left ``snapshots/<sha>`` that no commit names,
    never cleaned. The next start-up removes them and keeps every committed snapshot."""
    with running_platform(tmp_path) as (base_url, settings):
        requests.post(f"{base_url}/v1/datastore/namespaces", data={"namespace": NS}, timeout=TIMEOUT)
        create_repo(base_url, "snaps")
        commit(base_url, "snaps", {"kept.txt": b"kept"})
        home = settings.home
    snapshots = home / "datastore" / "datasets" / NS / "snaps" / "snapshots"
    committed = sorted(p.name for p in snapshots.iterdir())
    orphan = snapshots / ("f" * 40)
    (orphan / "data").mkdir(parents=True)
    (orphan / "data" / "half.jsonl").write_text("{}\n")
    with running_platform(tmp_path) as (base_url, _):
        assert not orphan.exists(), f"{orphan} survived the start-up"
        assert sorted(p.name for p in snapshots.iterdir()) == committed
        kept = requests.get(f"{base_url}/v1/hf/datasets/{NS}/snaps/resolve/main/kept.txt", timeout=TIMEOUT)
        assert kept.status_code == 200, kept.text[:300]
        assert kept.content == b"kept"
