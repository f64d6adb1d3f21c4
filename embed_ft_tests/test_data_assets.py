"""Dagster data stage: materialize specter_raw + specter_triplets, the blocking checks, the source sensor."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import (
    AssetKey,
    AssetSelection,
    DagsterInstance,
    Definitions,
    Failure,
    RunRequest,
    SensorResult,
    SkipReason,
    asset,
    build_sensor_context,
    define_asset_job,
    materialize,
)

from embed_ft.data.specter import local_data_version
from embed_ft.defs import data as data_defs
from embed_ft.defs.data import PINNED_REVISION_TAG
from embed_ft.defs.data_refresh import (
    SOURCE_ENV,
    build_specter_source_sensor,
    data_refresh_job,
    specter_source,
    specter_source_sensor,
)
from embed_ft.defs.experiment_spec import EXPERIMENT_TAG
from embed_ft.defs.values import TripletSplits
from embed_ft.spec.experiment import DataSpec

from .lineage_fixtures import store_spec

REPO_ROOT = Path(__file__).resolve().parents[1]
SPECTER_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "specter-sample"
SMALL_SPLIT = {"sample_size": 40, "validation_size": 8, "test_size": 8}


def records(n_queries: int = 12, per_query: int = 4, layout: str = "set") -> list[dict]:
    rows = [
        (f"Query paper {q}: a study of topic {q % 5}", f"Cited paper {q}-{i}", f"Unrelated paper {q}-{i}")
        for q in range(n_queries)
        for i in range(per_query)
    ]
    if layout == "set":
        return [{"set": list(r)} for r in rows]
    return [{"anchor": q, "positive": p, "negative": n} for q, p, n in rows]


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows))
    elif path.suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif path.suffix == ".csv":
        frame = pd.DataFrame(rows)
        if "set" in frame:
            frame["set"] = frame["set"].map(json.dumps)
        frame.to_csv(path, index=False)
    return path


DATA_EXPERIMENT = "data-test"


def spec_changes(source: str, split: dict) -> dict:
    return {"data.source": source, **{f"split.{key}": value for key, value in split.items()}}


@contextlib.contextmanager
def data_root_env(root: Path):
    saved = os.environ.get("EMBED_FT_DATA_ROOT")
    os.environ["EMBED_FT_DATA_ROOT"] = str(root)
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("EMBED_FT_DATA_ROOT", None)
        else:
            os.environ["EMBED_FT_DATA_ROOT"] = saved


def materialize_data(source: str, root: Path, instance=None, raise_on_error: bool = True, **split):
    """Store a spec (the tutorial preset's defaults, this source and split) and build the data assets with it."""
    instance = instance or DagsterInstance.ephemeral()
    store_spec(instance, DATA_EXPERIMENT, spec_changes(source, split or SMALL_SPLIT))
    with data_root_env(root):
        return materialize(
            [*data_defs.data_assets, *data_defs.data_checks],
            instance=instance,
            tags={EXPERIMENT_TAG: DATA_EXPERIMENT},
            raise_on_error=raise_on_error,
        )


def assert_materialized(result, root: Path) -> TripletSplits:
    assert result.success
    value = result.output_for_node("specter_triplets")
    assert isinstance(value, TripletSplits)
    assert value.root == (root / "triplets").resolve()
    for name, path in value.paths().items():
        lines = path.read_text(encoding="utf-8").splitlines()
        assert len(lines) == value.rows[name]
        assert value.rows[name] > 0
        assert list(json.loads(lines[0])) == ["query", "pos_doc", "neg_doc"]
    checks = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert checks == {
        "specter_triplets_schema": True,
        "specter_triplets_non_empty": True,
        "specter_triplets_no_query_leak": True,
    }
    return value


@pytest.mark.parametrize(
    "name,layout",
    [
        ("a.jsonl", "set"),
        ("a.jsonl", "anchor"),
        ("a.json", "set"),
        ("a.csv", "anchor"),
        ("a.csv", "set"),
        ("a.parquet", "anchor"),
    ],
)
def test_materialize_files_in_both_layouts(tmp_path, name, layout):
    source = write(tmp_path / "src" / name, records(layout=layout))
    result = materialize_data(str(source), tmp_path / "root")
    value = assert_materialized(result, tmp_path / "root")
    assert value.rows == {"training": 32, "validation": 8, "testing": 8}

    raw = result.asset_materializations_for_node("specter_raw")[0]
    assert raw.metadata["dagster/row_count"].value == 48
    assert raw.metadata["source"].value == str(source)
    assert raw.metadata["data_version"].value.startswith("sha256:")
    assert "Query paper" in raw.metadata["preview"].value
    assert raw.tags["dagster/data_version"] == raw.metadata["data_version"].value
    assert Path(raw.metadata["snapshot_path"].value).is_file()

    triplets = result.asset_materializations_for_node("specter_triplets")[0].metadata
    assert triplets["rows/training"].value == 32
    assert triplets["dropped/duplicate_triplet"].value == 0
    assert triplets["mean_chars/query"].value > 30
    assert triplets["source_data_version"].value == raw.metadata["data_version"].value
    assert triplets["path/testing"].value == str(value.testing)


def test_materialize_local_folder_counts_drops(tmp_path):
    rows = records(layout="set")
    write(tmp_path / "src" / "part-1.jsonl", rows[:24])
    bad = [{"set": ["x", "y"]}, {"set": ["same", "same", "n"]}, rows[0], {"set": ["q", "  ", "n"]}]
    write(tmp_path / "src" / "part-2.jsonl", rows[24:] + bad)
    result = materialize_data(str(tmp_path / "src"), tmp_path / "root")
    assert_materialized(result, tmp_path / "root")
    metadata = result.asset_materializations_for_node("specter_triplets")[0].metadata
    dropped = {k.split("/", 1)[1]: v.value for k, v in metadata.items() if k.startswith("dropped/")}
    assert dropped == {
        "missing_or_non_string": 0,
        "wrong_arity": 1,
        "empty_text": 1,
        "too_long": 0,
        "query_equals_positive": 1,
        "duplicate_triplet": 1,
    }
    assert metadata["input_rows"].value == 52
    assert metadata["clean_rows"].value == 48


def test_materialize_real_specter_sample_with_defaults(tmp_path, shared_data):
    # Default sizes (68,400 + 1,000) are clamped to the 316 rows / 10 queries: every split still gets rows.
    instance = DagsterInstance.ephemeral()
    store_spec(instance, DATA_EXPERIMENT, {"data.source": str(shared_data / "specter-sample")})
    with data_root_env(tmp_path):
        result = materialize(
            [*data_defs.data_assets, *data_defs.data_checks], instance=instance, tags={EXPERIMENT_TAG: DATA_EXPERIMENT}
        )
    value = assert_materialized(result, tmp_path)
    assert sum(value.rows.values()) <= 316
    notes = result.asset_materializations_for_node("specter_triplets")[0].metadata["notes"].value
    assert "clamped" in notes


@pytest.mark.parametrize(
    "content,expected",
    [
        ('{"title": "t", "abstract": "a"}\n', r"lacks the expected columns: found \['title', 'abstract'\]"),
        ('{"set": ["a", "b", "c"]}\n{"set": [\n', r"broken\.jsonl.*unreadable or corrupt"),
        (
            '{"set": ["q", "q", "n"]}\n{"set": ["a", "b"]}\n{"set": null}\n',
            r"zero valid rows out of 3 \(missing_or_non_string=1, wrong_arity=1, query_equals_positive=1\)",
        ),
    ],
    ids=["missing-columns", "corrupt-file", "zero-valid-rows"],
)
def test_bad_inputs_fail_with_clear_messages(tmp_path, content, expected):
    source = tmp_path / "broken.jsonl"
    source.write_text(content)
    with pytest.raises(Failure, match=expected) as err:
        materialize_data(str(source), tmp_path / "root")
    assert "broken.jsonl" in str(err.value)


def test_unreachable_hub_fails_with_local_file_hint(tmp_path, monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(Failure, match=r"cannot be reached.*set `source` to a local file or folder"):
        materialize_data("no-such-owner/no-such-dataset", tmp_path / "root")


def test_invalid_split_config_fails(tmp_path):
    source = write(tmp_path / "a.jsonl", records())
    with pytest.raises(Failure, match="either sample_size or sample_fraction"):
        materialize_data(str(source), tmp_path / "root", sample_size=20, sample_fraction=0.5)


def stand_in_triplets(value: TripletSplits):
    """An asset with the key `specter_triplets` that hands the checks a given (bad) value."""

    @asset(name="specter_triplets")
    def _stand_in():
        return value

    return _stand_in


def test_checks_fail_on_bad_data(tmp_path):
    files = {name: tmp_path / name / f"{name}.jsonl" for name in ("training", "validation", "testing")}
    for path in files.values():
        path.parent.mkdir(parents=True)
    files["training"].write_text(
        '{"query": "shared query", "pos_doc": "p", "neg_doc": ["n"]}\n{"query": "q2", "neg_doc": ["n"]}\n'
    )
    files["validation"].write_text('{"query": "shared query", "pos_doc": "p2", "neg_doc": ["n2"]}\n')
    files["testing"].write_text("")
    value = TripletSplits(
        root=tmp_path, **files, data_version="v", source_data_version="v", rows={name: 0 for name in files}
    )
    result = materialize([stand_in_triplets(value), *data_defs.data_checks], raise_on_error=False)
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert {name: e.passed for name, e in evaluations.items()} == {
        "specter_triplets_schema": False,
        "specter_triplets_non_empty": False,
        "specter_triplets_no_query_leak": False,
    }
    assert "training.jsonl:2: keys must be exactly" in evaluations["specter_triplets_schema"].description
    assert evaluations["specter_triplets_non_empty"].description == "empty split(s): testing"
    assert evaluations["specter_triplets_no_query_leak"].description == "1 queries shared by training&validation"
    assert all(e.blocking for e in evaluations.values())


def test_definitions_load_and_refresh_job_selects_only_data_assets():
    defs = Definitions(
        assets=data_defs.data_assets,
        asset_checks=data_defs.data_checks,
        jobs=[data_refresh_job],
        sensors=[specter_source_sensor],
    )
    job = defs.resolve_job_def("data_refresh_job")
    assert job.asset_layer.executable_asset_keys == {
        AssetKey("specter_raw"),
        AssetKey("mined_triplets"),
        AssetKey("specter_triplets"),
    }
    sensor = defs.resolve_sensor_def("specter_source_sensor")
    assert sensor.job_name == "data_refresh_job"


def tick(sensor, instance, cursor):
    """(RunRequest or SkipReason, new cursor) of one evaluation; a change is also observed on specter_source."""
    context = build_sensor_context(instance=instance, cursor=cursor)
    outcome = sensor(context)
    if isinstance(outcome, SensorResult):
        (request,) = outcome.run_requests
        (observation,) = outcome.asset_events
        assert observation.asset_key == AssetKey("specter_source")
        assert observation.tags["dagster/data_version"] == request.tags["embed_ft/source_version"]
        return request, context.cursor
    return outcome, context.cursor


def test_sensor_requests_one_run_per_source_change(tmp_path, monkeypatch):
    monkeypatch.setenv("EMBED_FT_DATA_ROOT", str(tmp_path / "root"))
    source = write(tmp_path / "src" / "a.jsonl", records())
    sensor = build_specter_source_sensor(DataSpec(source=str(source)), name="test_source_sensor")
    with DagsterInstance.ephemeral() as instance:
        store_spec(instance, "default", spec_changes(str(source), SMALL_SPLIT))
        requests = []
        cursor = None
        for change in [None, None, "append", None, None, "rewrite", None]:
            if change == "append":
                with open(source, "a") as handle:
                    handle.write(json.dumps({"set": ["new q", "new p", "new n"]}) + "\n")
            elif change == "rewrite":
                write(source, records(n_queries=13))
            outcome, cursor = tick(sensor, instance, cursor)
            requests.append(isinstance(outcome, RunRequest))
            if isinstance(outcome, RunRequest):
                assert outcome.tags[EXPERIMENT_TAG] == "default"  # the run uses that experiment's stored spec
                assert not outcome.run_config
                last_request = outcome
            else:
                assert isinstance(outcome, SkipReason)
                assert "unchanged" in outcome.skip_message
        assert requests == [True, False, True, False, False, True, False]

        # The requested run drives the refresh job: only the data assets, with the experiment's stored spec.
        defs = Definitions(assets=data_defs.data_assets, asset_checks=data_defs.data_checks, jobs=[data_refresh_job])
        run = defs.resolve_job_def("data_refresh_job").execute_in_process(
            run_config=last_request.run_config, tags=last_request.tags, instance=instance
        )
        assert run.success
        assert run.output_for_node("specter_triplets").rows["testing"] > 0

        # A sensor started afresh (no cursor) takes the latest materialization as its baseline: nothing to do.
        fresh = build_specter_source_sensor(DataSpec(source=str(source)), name="fresh_sensor")
        outcome, _ = tick(fresh, instance, None)
        assert isinstance(outcome, SkipReason)


def test_sensor_skips_when_the_hub_is_unreachable(monkeypatch):
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    sensor = build_specter_source_sensor(DataSpec(source="embedding-data/SPECTER"), name="hub_sensor")
    with DagsterInstance.ephemeral() as instance:
        outcome, cursor = tick(sensor, instance, None)
    assert isinstance(outcome, SkipReason)
    assert "cannot be reached" in outcome.skip_message
    assert cursor is None


class FakeHub:
    """A real HTTP server on 127.0.0.1 answering the Hub's dataset-info route, so huggingface_hub runs for real."""

    def __init__(self) -> None:
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        hub = self
        self.sha = "1" * 40

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's naming
                if self.path.startswith("/api/datasets/owner/missing"):
                    status, body, headers = 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"}
                elif self.path.startswith("/api/datasets/owner/specter"):
                    status, body, headers = 200, {"id": "owner/specter", "sha": hub.sha, "private": False}, {}
                else:
                    status, body, headers = 404, {"error": "not found"}, {}
                data = json.dumps(body).encode()
                self.send_response(status)
                for key, value in {
                    "Content-Type": "application/json",
                    "Content-Length": str(len(data)),
                    **headers,
                }.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture()
def fake_hub(monkeypatch):
    import huggingface_hub.constants

    hub = FakeHub()
    monkeypatch.setattr(huggingface_hub.constants, "ENDPOINT", hub.url)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    yield hub
    hub.close()


def test_unknown_hub_dataset_id_fails_clearly(tmp_path, fake_hub):
    with pytest.raises(Failure, match=r"'owner/missing': unknown dataset id.*set `source` to a local file"):
        materialize_data("owner/missing", tmp_path / "root")


def test_sensor_follows_hub_revisions_and_pins_them(fake_hub):
    sensor = build_specter_source_sensor(DataSpec(source="owner/specter"), name="hub_revision_sensor")
    with DagsterInstance.ephemeral() as instance:
        outcomes = []
        cursor = None
        for sha in ["1" * 40, "1" * 40, "2" * 40, "2" * 40]:
            fake_hub.sha = sha
            outcome, cursor = tick(sensor, instance, cursor)
            outcomes.append(outcome)
    assert [isinstance(o, RunRequest) for o in outcomes] == [True, False, True, False]
    # The run builds exactly the sha seen, pinned by a tag: the stored `revision` setting is left alone.
    assert outcomes[0].tags[PINNED_REVISION_TAG] == "1" * 40
    assert outcomes[2].tags[PINNED_REVISION_TAG] == "2" * 40
    assert not outcomes[0].run_config  # no settings: the experiment's stored spec
    assert cursor == "2" * 40


def test_sensor_launched_refresh_keeps_the_split_the_user_chose(tmp_path, monkeypatch):
    """Issue 14, item 9: a user materializes the data with a 5-row held-out split; the source changes; the run the
    sensor requests carries no settings, yet it rebuilds with the experiment's stored spec (not the 1,000-row
    default)."""
    monkeypatch.delenv(SOURCE_ENV, raising=False)
    monkeypatch.setenv("EMBED_FT_DATA_ROOT", str(tmp_path / "root"))
    root = tmp_path / "root"
    source = write(tmp_path / "src" / "a.jsonl", records(n_queries=20))
    chosen = {"sample_size": 30, "validation_size": 4, "test_size": 5, "seed": 3}
    defs = Definitions(
        assets=[specter_source, *data_defs.data_assets],
        asset_checks=data_defs.data_checks,
        jobs=[data_refresh_job],
        sensors=[specter_source_sensor],
    )
    with DagsterInstance.ephemeral() as instance:
        first = materialize_data(str(source), root, instance=instance, **chosen)
        assert first.output_for_node("specter_triplets").rows["testing"] == 5
        stored = instance.get_latest_materialization_event(AssetKey("specter_triplets")).asset_materialization
        assert {k: stored.metadata["settings"].value[k] for k in chosen} == chosen
        assert stored.metadata["experiment"].value == DATA_EXPERIMENT

        # The production sensor (no fixed source) watches what specter_raw was last built from: unchanged, no run.
        outcome, cursor = tick(defs.resolve_sensor_def("specter_source_sensor"), instance, None)
        assert isinstance(outcome, SkipReason)
        write(source, records(n_queries=24))
        request, cursor = tick(defs.resolve_sensor_def("specter_source_sensor"), instance, cursor)
        assert isinstance(request, RunRequest)
        assert not request.run_config
        assert request.tags[EXPERIMENT_TAG] == DATA_EXPERIMENT

        refresh = defs.resolve_job_def("data_refresh_job").execute_in_process(
            run_config=request.run_config, tags=request.tags, instance=instance
        )
        assert refresh.success
        rebuilt = refresh.output_for_node("specter_triplets")
        assert rebuilt.rows["testing"] == 5
        assert rebuilt.rows["validation"] == 4
        assert rebuilt.data_version != first.output_for_node("specter_triplets").data_version
        assert rebuilt.root == (root / "triplets").resolve()


def test_source_asset_observes_the_content_hash_of_a_local_source(tmp_path, monkeypatch):
    source = write(tmp_path / "src" / "a.jsonl", records())
    monkeypatch.setenv(SOURCE_ENV, str(source))
    observe = define_asset_job("observe_source", selection=AssetSelection.keys("specter_source"))
    defs = Definitions(assets=[specter_source], jobs=[observe])
    with DagsterInstance.ephemeral() as instance:
        assert defs.resolve_job_def("observe_source").execute_in_process(instance=instance).success
        record = instance.fetch_observations(AssetKey("specter_source"), limit=1).records[0]
        observation = record.asset_observation
        assert observation.tags["dagster/data_version"] == local_data_version(source)
        assert observation.metadata["version_is"].value == "content hash"
        assert observation.metadata["source_kind"].value == "local"
