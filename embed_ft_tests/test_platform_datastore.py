"""Data Store of the local platform, driven by the real huggingface_hub client over a real socket."""

from __future__ import annotations

import json

import pytest
import requests
from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError

from embed_ft.platform.paths import InvalidPathError, safe_join
from embed_ft.platform.services.repo_store import RepoNotFoundError, RepoStore
from embed_ft_tests.platform_server import hub_online, running_platform  # noqa: F401  (fixture)

REPO = "embed-sft-ns/embed-sft-data"
TRAINING = b'{"query": "q1", "pos_doc": "p1", "neg_doc": ["n1"]}\n'
VALIDATION = b'{"query": "q2", "pos_doc": "p2", "neg_doc": ["n2"]}\n'


def repo_files_dir(settings, repo_type: str, namespace: str, name: str, revision: str = "main"):
    """The folder of a repo's files at ``revision``, as the in-process readers (customizer, evaluator) see it."""
    return RepoStore(settings).files_dir(repo_type, namespace, name, revision)


def read_repo_file(settings, namespace: str, name: str, path: str) -> bytes:
    """One file of a dataset repo at ``main``, read in-process."""
    target = safe_join(repo_files_dir(settings, "dataset", namespace, name), path)
    if not target.is_file():
        raise FileNotFoundError(f"dataset repo {namespace}/{name} has no file {path!r}")
    return target.read_bytes()


def list_repo_paths(settings, repo_type: str, namespace: str, name: str, revision: str) -> list[str]:
    """Every file path of a repo at ``revision``, sorted."""
    folder = repo_files_dir(settings, repo_type, namespace, name, revision)
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())


def _dataset_folder(root):
    (root / "training").mkdir(parents=True)
    (root / "validation").mkdir()
    (root / "training" / "training.jsonl").write_bytes(TRAINING)
    (root / "validation" / "validation.jsonl").write_bytes(VALIDATION)
    return root


def _api(base_url: str) -> HfApi:
    """huggingface_hub on the platform, once the Data Store namespaces of this module's repos exist (a repo is
    created in an existing namespace only; 409 when it exists already)."""
    for namespace in (REPO.split("/")[0], "org"):
        requests.post(f"{base_url}/v1/datastore/namespaces", data={"namespace": namespace}, timeout=30)
    return HfApi(endpoint=f"{base_url}/v1/hf", token=False)


def test_dataset_round_trip_with_huggingface_hub(tmp_path, hub_online):
    folder = _dataset_folder(tmp_path / "upload")
    with running_platform(tmp_path) as (base_url, settings):
        api = _api(base_url)
        url = api.create_repo(REPO, repo_type="dataset")
        assert url.repo_id == REPO
        assert url.repo_type == "dataset"
        with pytest.raises(HfHubHTTPError) as conflict:
            api.create_repo(REPO, repo_type="dataset")
        assert conflict.value.response.status_code == 409
        assert api.create_repo(REPO, repo_type="dataset", exist_ok=True).repo_id == REPO

        commit = api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder, commit_message="data")
        assert len(commit.oid) == 40
        assert commit.oid in commit.commit_url

        assert sorted(api.list_repo_files(REPO, repo_type="dataset")) == [
            "training/training.jsonl",
            "validation/validation.jsonl",
        ]
        tree = {e.path: e for e in api.list_repo_tree(REPO, repo_type="dataset", recursive=True)}
        assert set(tree) == {"training", "training/training.jsonl", "validation", "validation/validation.jsonl"}
        assert tree["training/training.jsonl"].size == len(TRAINING)
        top = [e.path for e in api.list_repo_tree(REPO, repo_type="dataset")]
        assert top == ["training", "validation"]
        under = [e.path for e in api.list_repo_tree(REPO, "training", repo_type="dataset")]
        assert under == ["training/training.jsonl"]

        info = api.dataset_info(REPO)
        assert info.sha == commit.oid
        assert {s.rfilename: s.size for s in info.siblings} == {
            "training/training.jsonl": len(TRAINING),
            "validation/validation.jsonl": len(VALIDATION),
        }

        downloaded = hf_hub_download(
            REPO,
            "training/training.jsonl",
            repo_type="dataset",
            endpoint=f"{base_url}/v1/hf",
            token=False,
            cache_dir=tmp_path / "cache",
        )
        assert open(downloaded, "rb").read() == TRAINING
        head = requests.head(f"{base_url}/v1/hf/datasets/{REPO}/resolve/main/training/training.jsonl")
        assert head.status_code == 200
        assert head.headers["X-Repo-Commit"] == commit.oid
        assert head.headers["ETag"].strip('"') == tree["training/training.jsonl"].blob_id
        assert int(head.headers["Content-Length"]) == len(TRAINING)

        # The same files again: the client sees unchanged oids and makes no commit.
        assert api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder).oid == commit.oid

        # In-process readers (customizer, evaluator) see the same files.
        assert read_repo_file(settings, "embed-sft-ns", "embed-sft-data", "validation/validation.jsonl") == VALIDATION
        files_dir = repo_files_dir(settings, "dataset", "embed-sft-ns", "embed-sft-data")
        assert (files_dir / "training" / "training.jsonl").read_bytes() == TRAINING
        assert files_dir.resolve().is_relative_to(settings.home)

        api.delete_repo(REPO, repo_type="dataset")
        assert not api.repo_exists(REPO, repo_type="dataset")
        with pytest.raises(RepositoryNotFoundError):
            api.delete_repo(REPO, repo_type="dataset")
        api.delete_repo(REPO, repo_type="dataset", missing_ok=True)
        with pytest.raises(RepoNotFoundError, match="embed-sft-ns/embed-sft-data"):
            read_repo_file(settings, "embed-sft-ns", "embed-sft-data", "training/training.jsonl")


def test_every_commit_is_a_revision_and_deletes_work(tmp_path, hub_online):
    with running_platform(tmp_path) as (base_url, settings):
        api = _api(base_url)
        api.create_repo(REPO, repo_type="dataset")
        first = api.upload_file(path_or_fileobj=b"v1\n", path_in_repo="notes/a.txt", repo_id=REPO, repo_type="dataset")
        api.upload_file(path_or_fileobj=b"keep\n", path_in_repo="notes/b.txt", repo_id=REPO, repo_type="dataset")
        second = api.upload_file(path_or_fileobj=b"v2\n", path_in_repo="notes/a.txt", repo_id=REPO, repo_type="dataset")
        assert first.oid != second.oid

        def fetch(revision: str) -> bytes:
            path = hf_hub_download(
                REPO,
                "notes/a.txt",
                repo_type="dataset",
                revision=revision,
                endpoint=f"{base_url}/v1/hf",
                token=False,
                cache_dir=tmp_path / "cache",
            )
            return open(path, "rb").read()

        assert fetch("main") == b"v2\n"
        assert fetch(first.oid) == b"v1\n"
        assert [s.rfilename for s in api.dataset_info(REPO, revision=first.oid).siblings] == ["notes/a.txt"]
        with pytest.raises(RevisionNotFoundError):
            api.dataset_info(REPO, revision="no-such-branch")

        api.delete_file("notes/a.txt", REPO, repo_type="dataset")
        assert api.list_repo_files(REPO, repo_type="dataset") == ["notes/b.txt"]
        with pytest.raises(EntryNotFoundError):
            api.delete_file("notes/missing.txt", REPO, repo_type="dataset")
        with pytest.raises(EntryNotFoundError):
            hf_hub_download(
                REPO,
                "notes/a.txt",
                repo_type="dataset",
                endpoint=f"{base_url}/v1/hf",
                token=False,
                cache_dir=tmp_path / "cache2",
            )
        api.delete_folder("notes", REPO, repo_type="dataset")
        assert api.list_repo_files(REPO, repo_type="dataset") == []
        assert list_repo_paths(settings, "dataset", "embed-sft-ns", "embed-sft-data", first.oid) == ["notes/a.txt"]


def test_model_repos_are_served_too(tmp_path, hub_online):
    with running_platform(tmp_path) as (base_url, _):
        api = _api(base_url)
        api.create_repo("org/tiny-model")
        api.upload_file(path_or_fileobj=b"{}", path_in_repo="config.json", repo_id="org/tiny-model")
        assert api.model_info("org/tiny-model").siblings[0].rfilename == "config.json"
        path = hf_hub_download(
            "org/tiny-model", "config.json", endpoint=f"{base_url}/v1/hf", token=False, cache_dir=tmp_path / "cache"
        )
        assert open(path, "rb").read() == b"{}"
        # A model repo and a dataset repo of the same id are different repos.
        assert not api.repo_exists("org/tiny-model", repo_type="dataset")


def test_unknown_repo_answers_404_with_hub_error_codes(tmp_path, hub_online):
    with running_platform(tmp_path) as (base_url, _):
        api = _api(base_url)
        with pytest.raises(RepositoryNotFoundError):
            api.dataset_info("nobody/nothing")
        with pytest.raises(RepositoryNotFoundError):
            api.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id="nobody/nothing", repo_type="dataset")
        response = requests.get(f"{base_url}/v1/hf/datasets/nobody/nothing/resolve/main/x.txt")
        assert response.status_code == 404
        assert response.headers["X-Error-Code"] == "RepoNotFound"
        assert "nobody/nothing" in response.json()["detail"]
        unsupported = requests.get(f"{base_url}/v1/hf/api/spaces/nobody/nothing")
        assert unsupported.status_code == 404
        assert "spaces" in unsupported.json()["detail"]


def test_datastore_namespaces_are_form_encoded(tmp_path, hub_online):
    with running_platform(tmp_path) as (base_url, _):
        created = requests.post(f"{base_url}/v1/datastore/namespaces", data={"namespace": "embed-sft-ns"})
        assert created.status_code == 201
        assert created.json()["namespace"] == "embed-sft-ns"
        again = requests.post(f"{base_url}/v1/datastore/namespaces", data={"namespace": "embed-sft-ns"})
        assert again.status_code == 409
        assert "embed-sft-ns" in again.json()["detail"]
        got = requests.get(f"{base_url}/v1/datastore/namespaces/embed-sft-ns")
        assert got.status_code == 200
        assert set(got.json()) == {"namespace", "created_at", "updated_at"}
        missing = requests.post(f"{base_url}/v1/datastore/namespaces", data={"other": "x"})
        assert missing.status_code == 400
        assert "namespace" in missing.json()["detail"]

        # A namespace that still holds repos is not deleted.
        _api(base_url).create_repo(REPO, repo_type="dataset")
        busy = requests.delete(f"{base_url}/v1/datastore/namespaces/embed-sft-ns")
        assert busy.status_code == 409
        assert "embed-sft-data" in busy.json()["detail"]
        _api(base_url).delete_repo(REPO, repo_type="dataset")
        assert requests.delete(f"{base_url}/v1/datastore/namespaces/embed-sft-ns").status_code == 204
        gone = requests.get(f"{base_url}/v1/datastore/namespaces/embed-sft-ns")
        assert gone.status_code == 404
        assert "embed-sft-ns" in gone.json()["detail"]


def test_repos_files_and_namespaces_survive_a_restart(tmp_path, hub_online):
    folder = _dataset_folder(tmp_path / "upload")
    with running_platform(tmp_path) as (base_url, _):
        requests.post(f"{base_url}/v1/datastore/namespaces", data={"namespace": "embed-sft-ns"}).raise_for_status()
        api = _api(base_url)
        api.create_repo(REPO, repo_type="dataset")
        commit = api.upload_folder(repo_id=REPO, repo_type="dataset", folder_path=folder)
    with running_platform(tmp_path) as (base_url, _):
        api = _api(base_url)
        assert api.dataset_info(REPO).sha == commit.oid
        path = hf_hub_download(
            REPO,
            "validation/validation.jsonl",
            repo_type="dataset",
            endpoint=f"{base_url}/v1/hf",
            token=False,
            cache_dir=tmp_path / "cache",
        )
        assert open(path, "rb").read() == VALIDATION
        assert requests.get(f"{base_url}/v1/datastore/namespaces/embed-sft-ns").status_code == 200


def test_commit_with_stale_parent_is_refused(tmp_path, hub_online):
    with running_platform(tmp_path) as (base_url, _):
        api = _api(base_url)
        api.create_repo(REPO, repo_type="dataset")
        initial = api.dataset_info(REPO).sha
        api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO, repo_type="dataset")
        body = "\n".join(
            json.dumps(line)
            for line in (
                {"key": "header", "value": {"summary": "late", "parentCommit": initial}},
                {"key": "file", "value": {"path": "b.txt", "content": "Mg==", "encoding": "base64"}},
            )
        )
        response = requests.post(
            f"{base_url}/v1/hf/api/datasets/{REPO}/commit/main",
            data=body,
            headers={"Content-Type": "application/x-ndjson"},
        )
        assert response.status_code == 412
        assert initial in response.json()["detail"]
        assert api.list_repo_files(REPO, repo_type="dataset") == ["a.txt"]


def test_in_process_readers_refuse_unsafe_paths(tmp_path, hub_online):
    with running_platform(tmp_path) as (base_url, settings):
        api = _api(base_url)
        api.create_repo(REPO, repo_type="dataset")
        api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=REPO, repo_type="dataset")
        with pytest.raises(InvalidPathError, match="'..'"):
            read_repo_file(settings, "embed-sft-ns", "embed-sft-data", "../../state.sqlite3")
        with pytest.raises(InvalidPathError):
            repo_files_dir(settings, "dataset", "..", "embed-sft-data")
        with pytest.raises(FileNotFoundError, match="b.txt"):
            read_repo_file(settings, "embed-sft-ns", "embed-sft-data", "b.txt")
