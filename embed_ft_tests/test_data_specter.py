"""The SPECTER data layer: loading (all formats and layouts), cleaning, leak-free split, NeMo JSONL writing."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from embed_ft.data import nemo_jsonl_writer
from embed_ft.data.cleaning import clean_triplets
from embed_ft.data.errors import SourceError
from embed_ft.data.nemo_jsonl_writer import encode_nemo_jsonl, write_nemo_jsonl
from embed_ft.data.specter import build_triplet_splits, load_specter_source, local_data_version
from embed_ft.data.split_checks import crossing_queries, schema_problems
from embed_ft.data.splitting import SplitOptions, split_triplets
from embed_ft.formats.nemo_jsonl import dumps_row

REPO_ROOT = Path(__file__).resolve().parents[1]
SPECTER_SAMPLE = REPO_ROOT.parent / "shared" / "data" / "specter-sample"


def triplets(n_queries: int = 12, per_query: int = 4) -> list[tuple[str, str, str]]:
    return [
        (f"Query paper {q} on topic {q % 5}", f"Cited paper {q}-{i}", f"Unrelated paper {q}-{i}")
        for q in range(n_queries)
        for i in range(per_query)
    ]


def write_rows(path: Path, rows: list[tuple[str, str, str]], layout: str) -> Path:
    """Write triplets to `path` (format from its suffix) in the `set` or anchor/positive/negative layout."""
    if layout == "set":
        records = [{"set": list(r)} for r in rows]
    else:
        records = [{"anchor": q, "positive": p, "negative": n} for q, p, n in rows]
    path.parent.mkdir(parents=True, exist_ok=True)
    suffix = path.suffix
    if suffix == ".jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in records))
    elif suffix == ".json":
        path.write_text(json.dumps(records))
    elif suffix == ".parquet":
        pq.write_table(pa.Table.from_pylist(records), path)
    elif suffix == ".csv":
        frame = pd.DataFrame(records)
        if layout == "set":
            frame["set"] = frame["set"].map(json.dumps)
        frame.to_csv(path, index=False)
    return path


@pytest.fixture()
def cache_dir(tmp_path) -> str:
    return str(tmp_path / "hf_cache")


@pytest.mark.parametrize("suffix", [".jsonl", ".json", ".parquet", ".csv"])
@pytest.mark.parametrize("layout", ["set", "anchor"])
def test_every_format_and_layout_loads_to_the_same_triplets(tmp_path, cache_dir, suffix, layout):
    rows = triplets(3, 2)
    path = write_rows(tmp_path / f"data{suffix}", rows, layout)
    loaded = load_specter_source(str(path), cache_dir=cache_dir)
    assert loaded.kind == "local"
    assert loaded.revision is None
    assert loaded.layout == ("set" if layout == "set" else "columns")
    assert loaded.data_version.startswith("sha256:")
    clean = clean_triplets(loaded.table).table
    assert clean.column_names == ["query", "positive", "negatives"]
    assert [(r["query"], r["positive"], r["negatives"]) for r in clean.to_pylist()] == [(q, p, [n]) for q, p, n in rows]


def test_local_folder_loads_all_files_and_hashes_content(tmp_path, cache_dir):
    folder = tmp_path / "src"
    write_rows(folder / "a.jsonl", triplets(2, 2), "set")
    write_rows(folder / "nested" / "b.jsonl", triplets(4, 1)[2:], "set")
    first = load_specter_source(str(folder), cache_dir=cache_dir)
    assert first.num_rows == 4 + 2
    assert len(first.files) == 2
    assert load_specter_source(str(folder), cache_dir=cache_dir).data_version == first.data_version
    assert local_data_version(folder) == first.data_version
    with open(folder / "a.jsonl", "a") as handle:
        handle.write(json.dumps({"set": ["new query", "new positive", "new negative"]}) + "\n")
    changed = load_specter_source(str(folder), cache_dir=cache_dir)
    assert changed.data_version != first.data_version
    assert changed.num_rows == 7


def test_missing_columns_name_found_and_expected(tmp_path, cache_dir):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"title": "a", "abstract": "b"}) + "\n")
    with pytest.raises(SourceError) as err:
        load_specter_source(str(path), cache_dir=cache_dir)
    message = str(err.value)
    assert "bad.jsonl" in message
    assert "['title', 'abstract']" in message
    assert "`set`" in message
    assert "`anchor`, `positive`, `negative`" in message


@pytest.mark.parametrize(
    "name,content",
    [("broken.jsonl", b'{"set": ["a", "b", "c"]}\n{"set": ["a", \n'), ("broken.parquet", b"PAR1 this is not parquet")],
)
def test_corrupt_file_is_named(tmp_path, cache_dir, name, content):
    folder = tmp_path / "src"
    folder.mkdir()
    good_suffix = Path(name).suffix
    write_rows(folder / f"0good{good_suffix}", triplets(2, 1), "set")
    (folder / name).write_bytes(content)
    with pytest.raises(SourceError, match=rf"{name}.*unreadable or corrupt"):
        load_specter_source(str(folder), cache_dir=cache_dir)


def test_invalid_utf8_names_the_file(tmp_path, cache_dir):
    folder = tmp_path / "src"
    write_rows(folder / "a.jsonl", triplets(2, 1), "set")
    (folder / "b.jsonl").write_bytes(b'{"set": ["caf\xe9 au lait", "b", "c"]}\n')
    with pytest.raises(SourceError, match=r"b\.jsonl' holds text that is not valid UTF-8"):
        load_specter_source(str(folder), cache_dir=cache_dir)


def test_missing_local_path_and_unsupported_suffix(tmp_path):
    with pytest.raises(SourceError, match="does not exist"):
        load_specter_source(str(tmp_path / "nope.jsonl"))
    other = tmp_path / "data.txt"
    other.write_text("x")
    with pytest.raises(SourceError, match=r"suffix '\.txt'"):
        load_specter_source(str(other))


def test_unreachable_hub_says_so_and_shows_the_local_alternative(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(SourceError) as err:
        load_specter_source("no-such-owner/no-such-dataset")
    message = str(err.value)
    assert "cannot be reached" in message
    assert "no-such-owner/no-such-dataset" in message
    assert "set `source` to a local file or folder" in message


def test_cleaning_counts_each_reason_and_strips():
    table = pa.table(
        {
            "set": [
                ["  good query ", "good positive", "good negative"],  # kept (stripped)
                ["good query", "good positive", "good negative"],  # duplicate after stripping
                None,  # missing
                ["q", None, "n"],  # non-string element
                ["q", "p"],  # wrong arity
                [],  # wrong arity
                ["q", "   ", "n"],  # empty text
                ["q", "p", ""],  # empty negative
                ["same", "same", "n"],  # query equals positive
                ["q" * 30, "p", "n"],  # too long (max 20)
                ["two negatives", "p", "n1", "n2"],  # kept: [query, positive, negative, ...]
            ]
        }
    )
    result = clean_triplets(table, max_text_chars=20)
    assert result.dropped == {
        "missing_or_non_string": 2,
        "wrong_arity": 2,
        "empty_text": 2,
        "too_long": 1,
        "query_equals_positive": 1,
        "duplicate_triplet": 1,
    }
    assert result.input_rows == 11
    assert result.table.to_pylist() == [
        {"query": "good query", "positive": "good positive", "negatives": ["good negative"]},
        {"query": "two negatives", "positive": "p", "negatives": ["n1", "n2"]},
    ]


def test_duplicates_are_exact_even_when_lengths_collide():
    table = pa.table(
        {
            "query": ["q", "q", "q", "q", "q", "q"],
            "positive": ["ab", "ab", "ba", "ab", "pp", "pp"],
            "negatives": [["cd"], ["ce"], ["cd"], ["cd"], ["ab"], ["a", "b"]],
        }
    )
    result = clean_triplets(table)
    assert result.dropped["duplicate_triplet"] == 1
    assert result.num_rows == 5
    assert result.table.slice(3).to_pylist()[0]["negatives"] == ["ab"]


def test_split_with_codes_from_cleaning_equals_split_on_texts():
    rows = triplets(30, 3) + triplets(5, 1)  # the repeats are dropped, so some codes must be renumbered
    table = pa.table({"set": [list(r) for r in rows] + [["only dropped query", "only dropped query", "n"]]})
    cleaned = clean_triplets(table)
    options = SplitOptions(sample_size=60, validation_size=10, test_size=10, seed=5)
    with_codes = split_triplets(cleaned.table.column("query"), options, query_codes=cleaned.query_codes)
    from_texts = split_triplets(cleaned.table.column("query"), options)
    assert cleaned.query_codes.max() + 1 == with_codes.distinct_queries == 30
    for name in from_texts.indices:
        assert np.array_equal(with_codes.indices[name], from_texts.indices[name])


def test_cleaning_column_layouts_and_non_string_columns():
    frame = pd.DataFrame({"anchor": ["a", None, "c"], "positive": ["p", "p", "p"], "negative": ["n", "n", None]})
    result = clean_triplets(frame)
    assert result.dropped["missing_or_non_string"] == 2
    assert result.num_rows == 1
    numeric = pa.table({"query": [1, 2], "pos_doc": ["p", "p"], "neg_doc": [["n"], ["n"]]})
    assert clean_triplets(numeric).dropped["missing_or_non_string"] == 2
    nemo = pa.table({"query": ["q"], "pos_doc": ["p"], "neg_doc": [[]]})
    assert clean_triplets(nemo).dropped["wrong_arity"] == 1


def synthetic_table(n_queries: int, per_query: int) -> pa.Table:
    queries = np.repeat(np.array([f"query {i}" for i in range(n_queries)], dtype=object), per_query)
    ids = np.arange(n_queries * per_query)
    return pa.table(
        {
            "query": queries,
            "positive": [f"positive {i}" for i in ids],
            "negatives": [[f"negative {i}"] for i in ids],
        }
    )


def test_default_split_reproduces_the_tutorial_sizes():
    table = synthetic_table(16_000, 5)  # 80,000 rows, enough for 68,400 + 1,000
    result = split_triplets(table.column("query"), SplitOptions())
    sizes = {name: len(idx) for name, idx in result.indices.items()}
    assert sizes == {"training": 64_980, "validation": 3_420, "testing": 1_000}
    assert result.notes == []


def test_split_is_leak_free_and_reproducible():
    rng = np.random.default_rng(3)
    # Uneven group sizes (1..40 rows per query) make the boundaries non-trivial.
    sizes = rng.integers(1, 40, size=300)
    queries = np.repeat([f"q{i}" for i in range(300)], sizes)
    column = pa.array(queries)
    options = SplitOptions(sample_size=2_000, validation_size=0.1, test_size=300, seed=7)
    first = split_triplets(column, options)
    again = split_triplets(column, options)
    other_seed = split_triplets(column, SplitOptions(sample_size=2_000, validation_size=0.1, test_size=300, seed=8))
    for name in first.indices:
        assert np.array_equal(first.indices[name], again.indices[name])
    assert not np.array_equal(first.indices["training"], other_seed.indices["training"])
    assert {name: len(idx) for name, idx in first.indices.items()} == {
        "testing": 300,
        "validation": 200,
        "training": 1800,
    }
    query_sets = {name: set(queries[idx]) for name, idx in first.indices.items()}
    assert not query_sets["training"] & query_sets["validation"]
    assert not query_sets["training"] & query_sets["testing"]
    assert not query_sets["validation"] & query_sets["testing"]
    all_rows = np.concatenate(list(first.indices.values()))
    assert len(np.unique(all_rows)) == len(all_rows)


def test_small_source_is_clamped_with_notes_and_no_empty_split():
    table = synthetic_table(4, 3)
    result = split_triplets(table.column("query"), SplitOptions())
    sizes = {name: len(idx) for name, idx in result.indices.items()}
    assert all(n > 0 for n in sizes.values())
    assert sum(sizes.values()) <= 12
    assert any("clamped" in note for note in result.notes)


def test_fewer_than_three_queries_and_zero_valid_rows_fail_clearly(tmp_path):
    with pytest.raises(SourceError, match="at least 3 distinct queries.*6 rows and 2 distinct"):
        split_triplets(synthetic_table(2, 3).column("query"))
    bad = pa.table({"set": [["q", "q", "n"], ["only", "two"]]})
    with pytest.raises(SourceError, match=r"zero valid rows out of 2 \(wrong_arity=1, query_equals_positive=1\)"):
        build_triplet_splits(bad, tmp_path, source="bad.jsonl")


def test_specter_sample_with_explicit_small_sizes(tmp_path, cache_dir):
    if not SPECTER_SAMPLE.is_dir():
        pytest.skip("shared specter-sample is not present")
    loaded = load_specter_source(str(SPECTER_SAMPLE), cache_dir=cache_dir)
    assert loaded.num_rows == 316
    assert loaded.layout == "set"
    summary = build_triplet_splits(
        loaded.table,
        tmp_path,
        options=SplitOptions(sample_size=250, validation_size=25, test_size=25),
        data_version=loaded.data_version,
    )
    assert summary.rows["testing"] == 25
    assert summary.rows["validation"] == 25
    assert 0 < summary.rows["training"] <= 200
    assert summary.distinct_queries == 10
    assert summary.data_version == loaded.data_version
    paths = {name: Path(p) for name, p in summary.paths.items()}
    for name, path in paths.items():
        assert path == tmp_path / name / f"{name}.jsonl"
        rows, problems = schema_problems(path)
        assert rows == summary.rows[name]
        assert problems == []
    assert crossing_queries(paths) == {"training&validation": 0, "training&testing": 0, "validation&testing": 0}
    assert set(summary.mean_chars) == {"query", "pos_doc", "neg_doc"}
    assert summary.mean_chars["query"] > 20


def test_encoding_matches_json_dumps_with_one_row_per_line():
    texts = [
        'quote " inside',
        "back\\slash",
        "tab\tnew\nline\r",
        "ctrl \x01\x1f",
        "unicode é 漢字 🚀",
        "a/b",
        "sep\u2028x\x85",
    ]
    negatives = [[t, "plain"] for t in texts]
    table = pa.table({"query": texts, "positive": list(reversed(texts)), "negatives": negatives})
    rows = [{"query": q, "pos_doc": p, "neg_doc": n} for q, p, n in zip(texts, reversed(texts), negatives, strict=True)]
    # json.dumps, except U+0085/U+2028/U+2029, which are escaped so that str.splitlines() cannot split a row.
    separators = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})
    expected = "".join(json.dumps(r, ensure_ascii=False).translate(separators) + "\n" for r in rows)
    text = encode_nemo_jsonl(table).to_pybytes().decode("utf-8")
    assert text == expected
    assert text == "".join(dumps_row(r["query"], r["pos_doc"], r["neg_doc"]) for r in rows)  # the format's reference
    lines = text.splitlines()
    assert [json.loads(line) for line in lines] == rows
    assert all(list(json.loads(line)) == ["query", "pos_doc", "neg_doc"] for line in lines)


def test_escape_scan_flags_exactly_the_strings_json_must_escape():
    texts = [
        "é café",
        "© 2020",
        "plain",
        'a "quote"',
        "x\\y",
        "tab\t",
        "ls\u2028",
        "ps\u2029",
        "nel\x85",
        "…ellipsis",
        "€",
    ]
    values = pa.array(["padding"] + texts, pa.large_string()).slice(1)  # a slice: offsets do not start at 0
    expected = [False, False, False, True, True, True, True, True, True, False, False]
    assert nemo_jsonl_writer._rows_needing_escape(values).tolist() == expected


def test_failed_write_keeps_the_previous_file_and_leaves_no_temp(tmp_path, monkeypatch):
    table = synthetic_table(5, 2)
    target = tmp_path / "training" / "training.jsonl"
    write_nemo_jsonl(table, target)
    before = target.read_bytes()

    real_encode = nemo_jsonl_writer.encode_nemo_jsonl
    calls = {"n": 0}

    def fail_on_second_chunk(chunk):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError("disk full (simulated)")
        return real_encode(chunk)

    monkeypatch.setattr(nemo_jsonl_writer, "encode_nemo_jsonl", fail_on_second_chunk)
    changed = synthetic_table(6, 2)
    with pytest.raises(OSError, match="disk full"):
        write_nemo_jsonl(changed, target, chunk_rows=3)
    assert calls["n"] == 2  # the failure came mid-file, after one chunk was written to the temp file
    assert target.read_bytes() == before
    assert os.listdir(target.parent) == ["training.jsonl"]


def test_schema_problems_and_crossing_queries_detect_bad_files(tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        '{"query": "q", "pos_doc": "p", "neg_doc": ["n"]}\n'
        '{"pos_doc": "p", "query": "q", "neg_doc": ["n"]}\n'
        '{"query": "q", "pos_doc": "", "neg_doc": ["n"]}\n'
        '{"query": "q", "pos_doc": "p", "neg_doc": []}\n'
        "not json\n"
    )
    rows, problems = schema_problems(bad)
    assert rows == 5
    assert len(problems) == 4
    assert problems[0].startswith(f"{bad}:2: keys must be exactly query, pos_doc, neg_doc")
    other = tmp_path / "other.jsonl"
    other.write_text('{"query": "q", "pos_doc": "x", "neg_doc": ["y"]}\n')
    good = tmp_path / "good.jsonl"
    good.write_text('{"query": "z", "pos_doc": "x", "neg_doc": ["y"]}\n')
    assert crossing_queries({"a": other, "b": good, "c": other}) == {"a&b": 0, "a&c": 1, "b&c": 0}
