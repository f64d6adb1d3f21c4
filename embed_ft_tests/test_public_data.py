"""A preset's data on a machine without ../shared: BEIR SciFact from the Hugging Face Hub, downloaded once into the
Hub cache and laid out as BEIR files. Offline: the Hub is the local platform's Data Store (the Hub's HTTP API over
loopback) holding two repos laid out as the Hub serves ``BeIR/scifact`` (corpus.jsonl.gz, queries.jsonl.gz, README,
loading script) and ``BeIR/scifact-qrels`` (train.tsv, test.tsv, README); huggingface_hub itself downloads them."""

from __future__ import annotations

import dataclasses
import gzip
import json
import shutil
from pathlib import Path

import pytest
import requests
from click.testing import CliRunner
from huggingface_hub import HfApi

from embed_ft.cli import main
from embed_ft.data.beir import load_beir
from embed_ft.data.public_beir import FillState, fill_beir_folder, fill_state
from embed_ft.formats import beir_hub
from embed_ft.homes import preset_data_dir
from embed_ft.platform.services.evaluation.beir import load_beir_dataset

from .lineage_fixtures import write_beir_set
from .platform_server import hub_online, running_platform  # noqa: F401  (fixture)

TRAIN_QRELS = "query-id\tcorpus-id\tscore\nq1\td1-0\t1\nq2\td2-0\t1\n"


def hub_repo_folders(tmp_path: Path) -> tuple[Path, Path]:
    """Two folders with the files of BeIR/scifact and BeIR/scifact-qrels as the Hub lists them."""
    beir = write_beir_set(tmp_path / "made", "scifact")
    main_repo, qrels_repo = tmp_path / "hub" / "scifact", tmp_path / "hub" / "scifact-qrels"
    main_repo.mkdir(parents=True)
    qrels_repo.mkdir(parents=True)
    for name in ("corpus.jsonl", "queries.jsonl"):
        (main_repo / f"{name}.gz").write_bytes(gzip.compress((beir / name).read_bytes()))
    (main_repo / "README.md").write_text("---\nlicense: cc-by-sa-4.0\n---\n# BEIR SciFact\n")
    (main_repo / "scifact.py").write_text("# the loading script the Hub repo carries\n")
    shutil.copyfile(beir / "qrels" / "test.tsv", qrels_repo / "test.tsv")
    (qrels_repo / "train.tsv").write_text(TRAIN_QRELS)
    (qrels_repo / "README.md").write_text("# BEIR SciFact qrels\n")
    return main_repo, qrels_repo


@pytest.fixture
def local_hub(tmp_path, hub_online, monkeypatch):
    """The Hub endpoint (the local platform's Data Store) holding the two repos; an empty Hub cache of this test."""
    import huggingface_hub.constants

    main_repo, qrels_repo = hub_repo_folders(tmp_path)
    # The pinned revision of the real Hub does not exist here: the same set at the default branch.
    monkeypatch.setitem(beir_hub.KNOWN_SETS, "scifact", dataclasses.replace(beir_hub.SCIFACT, revision=None))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    with running_platform(tmp_path) as (base_url, _settings):
        endpoint = f"{base_url}/v1/hf"
        api = HfApi(endpoint=endpoint, token=False)
        # The Data Store holds repos only in namespaces that exist (the Hub has its organisations already).
        requests.post(f"{base_url}/v1/datastore/namespaces", data={"namespace": "BeIR"}, timeout=30).raise_for_status()
        for repo_id, folder in (("BeIR/scifact", main_repo), ("BeIR/scifact-qrels", qrels_repo)):
            api.create_repo(repo_id, repo_type="dataset")
            api.upload_folder(repo_id=repo_id, repo_type="dataset", folder_path=str(folder))
        # As HF_ENDPOINT would at import: the API and the file URLs both point at this Hub.
        monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", endpoint)
        monkeypatch.setattr(
            huggingface_hub.constants,
            "HUGGINGFACE_CO_URL_TEMPLATE",
            endpoint + "/{repo_id}/resolve/{revision}/{filename}",
        )
        yield main_repo, qrels_repo
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # the platform is gone: nothing to reach


def go_offline(monkeypatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


def test_scifact_is_downloaded_once_into_the_hub_cache_and_laid_out_as_beir_files(tmp_path, local_hub, monkeypatch):
    main_repo, qrels_repo = local_hub
    folder = tmp_path / "public-data" / "beir" / "scifact"
    assert fill_state(folder) is FillState.DOWNLOAD
    assert fill_state(tmp_path / "beir" / "nfcorpus") is None  # a set the Hub publishes that we do not know: not ours

    assert fill_beir_folder(folder) == folder
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()) == [
        "corpus.jsonl",
        "qrels/test.tsv",
        "qrels/train.tsv",
        "queries.jsonl",
    ]
    assert (folder / "corpus.jsonl").read_bytes() == gzip.decompress((main_repo / "corpus.jsonl.gz").read_bytes())
    assert (folder / "qrels" / "train.tsv").read_text() == TRAIN_QRELS
    assert fill_state(folder) is FillState.READY
    test_split, train_split = load_beir(folder, "test"), load_beir(folder, "train")
    assert len(test_split.qrels) == 8
    assert sorted(train_split.qrels) == ["q1", "q2"]
    assert json.loads((folder / "queries.jsonl").read_text().splitlines()[0])["_id"] == "q0"

    # Once: offline, a second folder is laid out from the Hub cache alone.
    go_offline(monkeypatch)
    again = tmp_path / "elsewhere" / "beir" / "scifact"
    assert fill_state(again) is FillState.CACHED
    fill_beir_folder(again)
    assert (again / "corpus.jsonl").read_bytes() == (folder / "corpus.jsonl").read_bytes()


def test_offline_without_the_cache_says_what_is_missing_and_the_fix(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "empty_cache"))
    go_offline(monkeypatch)
    folder = tmp_path / "beir" / "scifact"
    assert fill_state(folder) is FillState.UNAVAILABLE
    with pytest.raises(Exception, match=r"not in the Hub cache, while the Hub is offline.*EMBED_FT_SHARED_DATA"):
        fill_beir_folder(folder)
    assert not folder.exists()


@pytest.fixture
def clone_without_shared(tmp_path, monkeypatch):
    """A checkout with no ../shared beside it: the CLI's state and the preset's data land in it."""
    clone = tmp_path / "somewhere" / "embed-ft"
    clone.mkdir(parents=True)
    (clone / "pyproject.toml").write_text('[project]\nname = "embed-ft"\n')
    for name in (
        "EMBED_FT_SHARED_DATA",
        "EMBED_FT_BEIR_ROOT",
        "DAGSTER_HOME",
        "EMBED_FT_HOME",
        "EMBED_FT_DATA_ROOT",
        "NDS_URL",
        "NEMO_URL",
        "NIM_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(clone)
    return clone


def dry_run() -> tuple[int, list[str]]:
    result = CliRunner().invoke(main, ["run", "--dry-run"], catch_exceptions=False)
    return result.exit_code, result.output.splitlines()


def test_first_command_on_a_machine_without_shared_data(tmp_path, local_hub, clone_without_shared, monkeypatch):
    """Preflight of the README's first command: online with nothing cached it passes and says in one line what a
    run downloads; the download is real; offline with the Hub cache present it passes again; offline without it,
    it fails in one line that names the fix."""
    public = clone_without_shared / ".embed_ft" / "public-data"
    assert preset_data_dir() == public
    code, lines = dry_run()
    assert code == 0, "\n".join(lines)
    announced = [line for line in lines if line.strip().startswith("data:")]
    assert announced == [
        "  data: not on this machine; a run downloads BeIR/scifact (corpus.jsonl.gz, queries.jsonl.gz) and "
        "BeIR/scifact-qrels (train.tsv, test.tsv) from the Hugging Face Hub, about 2.8 MB, once, into the Hub cache; "
        f"laid out in {public / 'beir' / 'scifact'}"
    ]
    assert not (public / "beir" / "scifact").exists()  # a dry run downloads nothing

    fill_beir_folder(public / "beir" / "scifact")  # what the real run does first (with progress bars)
    shutil.rmtree(public)
    go_offline(monkeypatch)
    code, lines = dry_run()  # the Hub cache is present: laid out from it, preflight passes
    assert code == 0, "\n".join(lines)
    assert any(line.startswith("  data: from the Hub cache: BeIR/scifact") for line in lines)
    assert (public / "beir" / "scifact" / "qrels" / "train.tsv").is_file()
    assert lines[-1].startswith("{")  # the run config

    shutil.rmtree(public)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "no_cache"))
    code, lines = dry_run()
    assert code == 2
    problems = [line for line in lines if line.startswith("  source ")]
    assert len(problems) == 1
    assert "not in the Hugging Face Hub cache, and the Hub is offline" in problems[0]
    assert "unset HF_HUB_OFFLINE to download BeIR/scifact" in problems[0]


def test_the_local_evaluator_fetches_a_missing_task_set_the_same_way(tmp_path, local_hub):
    """`file://scifact/` missing from the evaluator's BEIR root: the platform downloads and lays it out through the
    same `formats.beir_hub` definition (every split of the known set)."""
    dataset = load_beir_dataset("file://scifact/", tmp_path / "evaluator-beir", allow_download=True)
    assert dataset.num_queries == 8
    assert (tmp_path / "evaluator-beir" / "scifact" / "qrels" / "train.tsv").read_text() == TRAIN_QRELS
