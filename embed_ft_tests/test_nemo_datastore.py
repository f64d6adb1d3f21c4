"""Data Store client: real huggingface_hub against the fake's HF routes (empty commitUrl, tokens, offline flag)."""

from __future__ import annotations

import pytest
from huggingface_hub import constants as hf_constants

from embed_ft.nemo import DataStoreClient, EntityStoreClient, NemoResponseError, NotFound, ServiceHTTP
from embed_ft_tests.nemo_fake import fake_nemo  # noqa: F401  (fixture)
from embed_ft_tests.platform_server import running_platform

REPO = "embed-sft-ns/embed-sft-data"
HF_TOKEN = "hf_LocalUserTokenAbcdef123456"


@pytest.fixture
def dataset_files(tmp_path):
    training = tmp_path / "training.jsonl"
    validation = tmp_path / "validation.jsonl"
    training.write_text('{"query": "q1", "pos_doc": "p1", "neg_doc": ["n1"]}\n')
    validation.write_text('{"query": "q2", "pos_doc": "p2", "neg_doc": ["n2", "n3"]}\n')
    return {"training/training.jsonl": training, "validation/validation.jsonl": validation}


def test_upload_survives_the_empty_commit_url_and_verifies_the_files(fake_nemo, dataset_files, tmp_path):
    assert fake_nemo.empty_commit_url  # the real Data Store's answer
    store = DataStoreClient(fake_nemo.base_url)
    store.create_repo(REPO)
    store.create_repo(REPO)  # exists: fine
    commit = store.upload_files(REPO, dataset_files, "training data v1")
    assert commit == fake_nemo.repos[REPO].head
    assert store.head_revision(REPO) == commit
    sizes = {path: local.stat().st_size for path, local in dataset_files.items()}
    assert store.list_files(REPO) == sizes
    assert fake_nemo.requests_to("POST", r"/v1/hf/api/datasets/embed-sft-ns/embed-sft-data/commit/main")
    local = store.download(REPO, "validation/validation.jsonl", tmp_path / "download")
    assert local.read_bytes() == dataset_files["validation/validation.jsonl"].read_bytes()
    assert store.files_url(REPO) == "hf://datasets/embed-sft-ns/embed-sft-data"


def test_upload_with_a_proper_commit_url_returns_the_commit_oid(fake_nemo, dataset_files):
    fake_nemo.empty_commit_url = False
    store = DataStoreClient(fake_nemo.base_url)
    store.create_repo(REPO)
    commit = store.upload_files(REPO, dataset_files, "v1")
    assert commit == fake_nemo.repos[REPO].head


def test_empty_commit_url_with_files_missing_raises_naming_them(fake_nemo, dataset_files):
    fake_nemo.store_commits = False
    store = DataStoreClient(fake_nemo.base_url)
    store.create_repo(REPO)
    with pytest.raises(NemoResponseError, match="training/training.jsonl missing; validation/validation.jsonl missing"):
        store.upload_files(REPO, dataset_files, "v1")


def test_no_token_means_no_authorization_header_and_the_hf_token_never_leaves(fake_nemo, dataset_files, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", HF_TOKEN)  # a user's huggingface.co token in the environment
    store = DataStoreClient(fake_nemo.base_url, hf_token=HF_TOKEN)
    store.ensure_namespace("embed-sft-ns")
    store.create_repo(REPO)
    store.upload_files(REPO, dataset_files, "v1")
    store.list_files(REPO)
    store.delete_repo(REPO)
    assert len(fake_nemo.requests) >= 6
    for request in fake_nemo.requests:
        assert "authorization" not in request.headers, f"{request.method} {request.path} sent an Authorization header"
        assert HF_TOKEN not in str(request.headers)
        assert HF_TOKEN.encode() not in request.body


def test_a_data_store_token_is_sent_as_bearer_on_rest_and_hf_routes(fake_nemo, dataset_files):
    store = DataStoreClient(fake_nemo.base_url, token="nds-token-123", hf_token=HF_TOKEN)
    store.ensure_namespace("embed-sft-ns")
    store.create_repo(REPO)
    store.upload_files(REPO, dataset_files, "v1")
    assert {r.headers.get("authorization") for r in fake_nemo.requests} == {"Bearer nds-token-123"}


def test_hub_offline_mode_does_not_block_the_data_store_and_is_restored(fake_nemo, dataset_files, monkeypatch):
    monkeypatch.setattr(hf_constants, "HF_HUB_OFFLINE", True)
    store = DataStoreClient(fake_nemo.base_url)
    store.create_repo(REPO)
    store.upload_files(REPO, dataset_files, "v1")
    assert set(store.list_files(REPO)) == set(dataset_files)
    assert hf_constants.HF_HUB_OFFLINE is True


def test_missing_repo_and_missing_local_file_raise_clear_errors(fake_nemo, tmp_path):
    store = DataStoreClient(fake_nemo.base_url)
    with pytest.raises(NotFound, match="Data Store: list files of ns/absent failed with HTTP 404"):
        store.list_files("ns/absent")
    with pytest.raises(NotFound, match="ns/absent"):
        store.head_revision("ns/absent")
    store.create_repo(REPO)
    with pytest.raises(FileNotFoundError, match="training/training.jsonl"):
        store.upload_files(REPO, {"training/training.jsonl": tmp_path / "nope.jsonl"}, "v1")
    store.delete_repo(REPO)
    store.delete_repo(REPO)  # missing_ok
    assert REPO not in fake_nemo.repos


def test_the_clients_drive_the_real_local_platform(tmp_path, dataset_files):
    with running_platform(tmp_path) as (base_url, _settings):
        store = DataStoreClient(base_url)
        entities = EntityStoreClient(ServiceHTTP(base_url, "Entity Store"))
        assert store.ensure_namespace("embed-sft-ns") is True
        assert store.ensure_namespace("embed-sft-ns") is False
        assert entities.ensure_namespace("embed-sft-ns") is True
        store.create_repo(REPO)
        commit = store.upload_files(REPO, dataset_files, "v1")
        assert commit
        assert commit == store.head_revision(REPO)
        assert store.list_files(REPO) == {p: f.stat().st_size for p, f in dataset_files.items()}
        registered = entities.create_dataset("embed-sft-data", "embed-sft-ns", store.files_url(REPO))
        assert registered.created
        assert registered["files_url"] == "hf://datasets/embed-sft-ns/embed-sft-data"
        assert entities.create_dataset("embed-sft-data", "embed-sft-ns", store.files_url(REPO)).created is False
