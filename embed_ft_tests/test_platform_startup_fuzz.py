"""Start-up fuzzing (issue 24, item 2): random corrupt rows and record files written into a home never stop the
platform's start-up; it serves the rest, lists every kind, and names what it set aside.

Hypothesis draws the damage: rows of every stored kind that cannot be read back (truncated JSON, JSON that is not
an object, nesting ~1,000 deep, bytes that are not UTF-8, SQLite values that are not text), objects whose fields
have the wrong types (served or set aside, never a 500), and damaged record files (a repo's ``repo.json`` or head
manifest truncated, emptied or replaced, and the home's own ``platform.json``, ``set_aside.json`` and
``serve.lock``). Each example copies a template home built once by the real platform, damages it, and starts the
real platform on it (loopback HTTP).
"""

from __future__ import annotations

import base64
import json
import shutil
import sqlite3
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings, strategies as st

from embed_ft.platform.cli import platform_group
from embed_ft_tests.platform_customizer_helpers import TIMEOUT
from embed_ft_tests.platform_server import running_platform

NS = "fuzz-ns"
REPOS = ("alpha", "beta")
KINDS = (
    "namespace",
    "dataset",
    "model",
    "customization_target",
    "customization_config",
    "customization_job",
    "datastore_namespace",
    "deployment_config",
    "model_deployment",
    "evaluation_config",
    "evaluation_target",
    "evaluation_job",
    "evaluation_result",
)
LIST_ROUTES = (
    "/v1/namespaces",
    "/v1/datasets",
    "/v1/models",
    "/v1/customization/targets",
    "/v1/customization/configs",
    "/v1/customization/jobs",
    "/v1/datastore/namespaces",
    "/v1/deployment/configs",
    "/v1/deployment/model-deployments",
    "/v1/evaluation/configs",
    "/v1/evaluation/targets",
    "/v1/evaluation/jobs",
    "/v1/evaluation/results",
    "/nim/v1/models",
)
STAMP = "2030-01-01T00:00:00+00:00"
GOOD_DOC = json.dumps(
    {
        "name": "x",
        "namespace": NS,
        "status": "running",
        "status_details": {"status": "ready"},
        "custom_fields": {"a": [1, 2, {"b": "c"}]},
        "description": "a row cut off mid-write",
    }
)

# ------------------------------------------------------------------------------------------------- strategies

ids = st.text(alphabet="abcdefghijklmnopqrstuvwxyz0123456789-", min_size=6, max_size=16).map(lambda s: f"fz-{s}")
unreadable_data = st.one_of(
    st.integers(1, len(GOOD_DOC) - 1).map(lambda cut: GOOD_DOC[:cut]),  # truncated
    st.one_of(st.integers(), st.text(max_size=20), st.lists(st.integers(), max_size=3), st.none()).map(
        json.dumps
    ),  # JSON, not an object
    st.integers(70, 1200).map(lambda depth: '{"x": ' + "[" * depth + "]" * depth + "}"),  # nested too deep
    st.binary(min_size=1, max_size=30).map(lambda raw: b"\xff" + raw),  # not UTF-8
    st.integers(-(2**63), 2**63 - 1),  # an SQLite integer, not text
)
odd_ids = ids.map(lambda s: f"odd-{s}")  # never the id of an unreadable row
wrong_types = st.fixed_dictionaries(
    {
        "name": st.just("odd"),  # the identifying fields are whole; the others have the wrong types
        "namespace": st.just(NS),
        "id": st.just("odd"),
        "status": st.one_of(st.sampled_from(["running", "pending", "ready"]), st.lists(st.integers(), max_size=2)),
        "status_details": st.one_of(st.text(max_size=5), st.integers(), st.none(), st.lists(st.none(), max_size=2)),
        "artifact": st.one_of(st.text(max_size=5), st.integers(), st.lists(st.none(), max_size=2)),
        "artifact_path": st.one_of(st.integers(), st.none()),
        "config_snapshot": st.one_of(st.integers(), st.text(max_size=5), st.none()),
        "hyperparameters": st.one_of(st.integers(), st.lists(st.none(), max_size=2), st.none()),
    }
).map(json.dumps)
record_damage = st.sampled_from(["truncate", "empty", "list", "garbage", "no-head-commit"])
home_file_damage = st.sampled_from(["platform.json", "set_aside.json", "serve.lock"])


@st.composite
def damage(draw):
    rows = draw(
        st.lists(
            st.tuples(st.sampled_from(KINDS), ids, unreadable_data),
            min_size=1,
            max_size=8,
            unique_by=lambda row: (row[0], row[1]),
        )
    )
    odd = draw(
        st.lists(st.tuples(st.sampled_from(KINDS), odd_ids, wrong_types), max_size=4, unique_by=lambda r: (r[0], r[1]))
    )
    repos = draw(
        st.dictionaries(
            st.sampled_from(REPOS), st.tuples(st.sampled_from(["repo.json", "manifest"]), record_damage), max_size=2
        )
    )
    files = draw(st.lists(home_file_damage, unique=True, max_size=3))
    return rows, odd, repos, files


# ------------------------------------------------------------------------------------------------- the home


@pytest.fixture(scope="module")
def template_home(tmp_path_factory) -> Path:
    """A home built by the real platform: a namespace, two Data Store repos with a commit each."""
    tmp = tmp_path_factory.mktemp("fuzz-template")
    with running_platform(tmp) as (base_url, settings):
        requests.post(f"{base_url}/v1/namespaces", json={"id": NS}, timeout=TIMEOUT).raise_for_status()
        requests.post(f"{base_url}/v1/datastore/namespaces", data={"namespace": NS}, timeout=TIMEOUT)
        for name in REPOS:
            created = requests.post(
                f"{base_url}/v1/hf/api/repos/create",
                timeout=TIMEOUT,
                json={"name": name, "organization": NS, "type": "dataset"},
            )
            assert created.status_code == 200, created.text
            lines = [
                json.dumps({"key": "header", "value": {"summary": "fuzz"}}),
                json.dumps(
                    {
                        "key": "file",
                        "value": {
                            "path": "d/f.txt",
                            "encoding": "base64",
                            "content": base64.b64encode(b"data").decode(),
                        },
                    }
                ),
            ]
            done = requests.post(
                f"{base_url}/v1/hf/api/datasets/{NS}/{name}/commit/main",
                timeout=TIMEOUT,
                data="\n".join(lines) + "\n",
                headers={"Content-Type": "application/x-ndjson"},
            )
            assert done.status_code == 200, done.text
        return settings.home


def damage_record(path: Path, how: str) -> None:
    text = path.read_bytes()
    if how == "truncate":
        path.write_bytes(text[: len(text) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "list":
        path.write_text("[1, 2]")
    elif how == "garbage":
        path.write_bytes(b"\x00\xffnot json")
    elif path.name == "repo.json":  # no-head-commit: the head names a commit the record does not hold
        path.write_text(json.dumps({**json.loads(text), "head": "0" * 40}))
    else:
        path.write_text(json.dumps({"f.txt": {"oid": 5}}))


def apply(home: Path, rows, odd, repos, files) -> None:
    with sqlite3.connect(home / "state.sqlite3") as db:
        for kind, id_, data in [*rows, *odd]:
            db.execute(
                "INSERT OR REPLACE INTO entities VALUES (?,?,?,?,?,?,?)", (kind, id_, NS, id_, data, STAMP, STAMP)
            )
    for name, (which, how) in repos.items():
        rdir = home / "datastore" / "datasets" / NS / name
        head = json.loads((rdir / "repo.json").read_text())["head"]
        damage_record(rdir / "repo.json" if which == "repo.json" else rdir / "commits" / f"{head}.json", how)
    for name in files:
        (home / name).write_bytes(b"\x00{not a record")


# ------------------------------------------------------------------------------------------------- the property


@settings(max_examples=8, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=damage())
def test_start_up_serves_the_rest_and_names_what_it_set_aside(template_home, tmp_path_factory, case):
    rows, odd, repos, files = case
    tmp = tmp_path_factory.mktemp("fuzz")
    home = tmp / "platform-home"
    shutil.copytree(template_home, home)
    apply(home, rows, odd, repos, files)
    with running_platform(tmp) as (base_url, _):
        for route in LIST_ROUTES:
            answer = requests.get(f"{base_url}{route}", params={"page_size": 1000}, timeout=TIMEOUT)
            assert answer.status_code == 200, f"GET {route}: {answer.status_code} {answer.text[:300]}"
        assert NS in [n.get("id") for n in requests.get(f"{base_url}/v1/namespaces", timeout=TIMEOUT).json()["data"]]
        for name in REPOS:
            info = requests.get(f"{base_url}/v1/hf/api/datasets/{NS}/{name}", timeout=TIMEOUT)
            expected = 409 if name in repos else 200
            assert info.status_code == expected, (
                f"repo {name} ({repos.get(name)}): {info.status_code} {info.text[:300]}"
            )
            if name in repos:
                deleted = requests.delete(
                    f"{base_url}/v1/hf/api/repos/delete",
                    timeout=TIMEOUT,
                    json={"name": name, "organization": NS, "type": "dataset"},
                )
                assert deleted.status_code == 200, f"damaged repo {name} cannot be deleted: {deleted.text[:300]}"
        shown = CliRunner().invoke(platform_group, ["status", "--home", str(home)]).output
    for kind, id_, _ in rows:
        assert f"stored {kind} '{id_}'" in shown, f"platform status does not name {kind} {id_}: {shown[-1500:]}"
    for name in repos:
        assert f"datasets/{NS}/{name}" in shown, f"platform status does not name repo {name}: {shown[-1500:]}"
