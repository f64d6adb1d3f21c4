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

import json
import shutil
from pathlib import Path

import pytest
import requests
from hypothesis import HealthCheck, Phase, given, settings, strategies as st

from embed_ft_tests.home_probes import (
    LIST_ROUTES,
    STAMP,
    STORED_KINDS,
    commit,
    create_repo,
    delete_repo,
    put_rows,
    status_text,
)
from embed_ft_tests.platform_customizer_helpers import TIMEOUT
from embed_ft_tests.platform_server import running_platform

NS = "fuzz-ns"
REPOS = ("alpha", "beta")
KINDS = tuple(STORED_KINDS)
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
        "status": st.one_of(st.sampled_from(["running", "pending", "ready"]), st.lists(st.integers(), max_size=2)),
        "status_details": st.one_of(st.text(max_size=5), st.integers(), st.none(), st.lists(st.none(), max_size=2)),
        "artifact": st.one_of(st.text(max_size=5), st.integers(), st.lists(st.none(), max_size=2)),
        "artifact_path": st.one_of(st.integers(), st.none()),
        "config_snapshot": st.one_of(st.integers(), st.text(max_size=5), st.none()),
        "hyperparameters": st.one_of(st.integers(), st.lists(st.none(), max_size=2), st.none()),
    }
)
MISSING = "<missing>"
# What happens to one field that names the row: gone, not text, empty, or naming another row.
identity_damage = st.sampled_from([MISSING, None, 5, [], {"a": 1}, "", "someone-else"])


@st.composite
def odd_row(draw) -> tuple[str, str, str, bool]:
    """(kind, key, JSON, damaged): a JSON object whose other fields have the wrong types; when ``damaged``, one
    field that names the row is missing, not text, empty or names another row (the row is set aside)."""
    kind = draw(st.sampled_from(KINDS))
    name = draw(odd_ids)
    doc = {"name": name, "namespace": NS, "id": name, "created_at": STAMP, "updated_at": STAMP, **draw(wrong_types)}
    if kind == "datastore_namespace":
        doc["namespace"] = name
    key = STORED_KINDS[kind].key(doc)
    damaged = draw(st.none() | st.tuples(st.sampled_from(STORED_KINDS[kind].key_fields), identity_damage))
    if damaged is not None:
        field, value = damaged
        if value == MISSING:
            del doc[field]
        else:
            doc[field] = value
    return kind, key, json.dumps(doc), damaged is not None


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
    odd = draw(st.lists(odd_row(), max_size=5, unique_by=lambda row: (row[0], row[1])))
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
            create_repo(base_url, NS, name)
            commit(base_url, NS, name, {"d/f.txt": b"data"})
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
    put_rows(home, [*rows, *((kind, key, data) for kind, key, data, _ in odd)], NS)
    for name, (which, how) in repos.items():
        rdir = home / "datastore" / "datasets" / NS / name
        head = json.loads((rdir / "repo.json").read_text())["head"]
        damage_record(rdir / "repo.json" if which == "repo.json" else rdir / "commits" / f"{head}.json", how)
    for name in files:
        (home / name).write_bytes(b"\x00{not a record")


# ------------------------------------------------------------------------------------------------- the property


@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    phases=(Phase.explicit, Phase.generate),  # no shrinking: each example starts a platform (minutes to shrink)
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@pytest.mark.slow  # 6 s: platform restarts over damaged stores
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
        for kind, key, _, damaged in odd:
            route = f"{STORED_KINDS[kind].list_route}/{key}"
            answer = requests.get(f"{base_url}{route}", timeout=TIMEOUT)
            expected = 404 if damaged else 200  # set aside, or served with its odd fields read as empty
            assert answer.status_code == expected, f"GET {route}: {answer.status_code} {answer.text[:300]}"
            if kind.endswith("_job"):
                answer = requests.get(f"{base_url}{route}/status", timeout=TIMEOUT)
                assert answer.status_code == expected, f"GET {route}/status: {answer.status_code} {answer.text[:300]}"
        for name in REPOS:
            info = requests.get(f"{base_url}/v1/hf/api/datasets/{NS}/{name}", timeout=TIMEOUT)
            expected = 409 if name in repos else 200
            assert info.status_code == expected, (
                f"repo {name} ({repos.get(name)}): {info.status_code} {info.text[:300]}"
            )
            if name in repos:
                deleted = delete_repo(base_url, NS, name)
                assert deleted.status_code == 200, f"damaged repo {name} cannot be deleted: {deleted.text[:300]}"
        shown = status_text(home)
    set_aside = [(kind, id_) for kind, id_, _ in rows] + [(kind, key) for kind, key, _, damaged in odd if damaged]
    for kind, id_ in set_aside:
        assert f"stored {kind} '{id_}'" in shown, f"platform status does not name {kind} {id_}: {shown[-1500:]}"
    for name in repos:
        assert f"datasets/{NS}/{name}" in shown, f"platform status does not name repo {name}: {shown[-1500:]}"
