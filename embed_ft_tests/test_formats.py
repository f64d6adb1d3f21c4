"""The shared file formats (`embed_ft.formats`) and the NeMo status vocabulary, on real temporary files."""

from __future__ import annotations

import gzip
import json
import os

import pytest

from embed_ft.formats.beir import (
    BeirFilesMissing,
    BeirFormatError,
    document_text,
    is_beir_folder,
    parse_beir,
    parse_qrels,
    read_beir_folder,
)
from embed_ft.formats.files import atomic_write, atomic_write_bytes, atomic_write_text
from embed_ft.formats.nemo_jsonl import TripletFileError, dumps_row, iter_lines, read_rows, row_problem
from embed_ft.nemo.status import (
    deployed_model,
    deployment_status,
    is_failed,
    is_ready,
    is_terminal,
    job_status,
    normalize_status,
)

# ------------------------------------------------------------------------------------------------ atomic writes


def test_atomic_writes_replace_the_file_and_leave_no_temporary(tmp_path):
    target = tmp_path / "sub" / "file.txt"
    atomic_write_text(target, "first")
    atomic_write_bytes(target, b"second")
    assert target.read_bytes() == b"second"
    atomic_write(target, lambda handle: handle.write("caf\u00e9".encode("utf-8")))
    assert target.read_text(encoding="utf-8") == "caf\u00e9"
    assert os.listdir(target.parent) == ["file.txt"]


def test_a_failed_atomic_write_keeps_the_old_file(tmp_path):
    target = tmp_path / "file.bin"
    atomic_write_bytes(target, b"old")

    def half_then_fail(handle) -> None:
        handle.write(b"new")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, half_then_fail)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file.bin"]


# ------------------------------------------------------------------------------------------------- NeMo JSONL


@pytest.mark.parametrize(
    "row, strict, problem",
    [
        ({"query": "q", "pos_doc": "p", "neg_doc": ["n"]}, True, None),
        ({"query": "q", "pos_doc": "p"}, False, None),  # the wire rule: in-batch negatives only
        ({"query": "q", "pos_doc": "p"}, True, "keys must be exactly query, pos_doc, neg_doc in that order"),
        ({"pos_doc": "p", "query": "q", "neg_doc": ["n"]}, True, "keys must be exactly query, pos_doc, neg_doc"),
        ({"pos_doc": "p", "query": "q", "neg_doc": ["n"]}, False, None),
        ({"query": "q", "pos_doc": "p", "neg_doc": []}, True, "'neg_doc' must hold at least one negative"),
        (["q", "p"], False, "expected a JSON object, got list"),
        ({"query": "q", "neg_doc": ["n"]}, False, "'pos_doc' is missing"),
        ({"query": " ", "pos_doc": "p"}, False, "'query' must be a non-empty string"),
        ({"query": "q", "pos_doc": "p", "neg_doc": "n"}, False, "'neg_doc' must be an array of strings, got a string"),
        ({"query": "q", "pos_doc": "p", "neg_doc": {"a": 1}}, False, "'neg_doc' must be an array of strings, got dict"),
        ({"query": "q", "pos_doc": "p", "neg_doc": ["n", ""]}, False, "'neg_doc[1]' must be a non-empty string"),
    ],
)
def test_row_problem(row, strict, problem):
    found = row_problem(row, strict=strict)
    if problem is None:
        assert found is None
    else:
        assert found is not None
        assert found.startswith(problem)


def test_iter_lines_numbers_lines_and_skips_blank_ones(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text('{"query": "q", "pos_doc": "p", "neg_doc": ["n"]}\n\n{broken\n{"query": "q"}\n', encoding="utf-8")
    lines = list(iter_lines(path, strict=True))
    assert [line.number for line in lines] == [1, 3, 4]
    assert lines[0].problem is None
    assert lines[1].problem.startswith("not valid JSON")
    assert lines[2].problem.startswith("keys must be exactly")


def test_read_rows_normalises_rows_and_names_broken_lines(tmp_path):
    good = tmp_path / "good.jsonl"
    good.write_text('{"query": "q", "pos_doc": "p", "extra": 1}\n', encoding="utf-8")
    assert read_rows(good) == [{"query": "q", "pos_doc": "p", "neg_doc": []}]

    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join('{"query": "q"}\n' for _ in range(7)) + "nope\n", encoding="utf-8")
    with pytest.raises(TripletFileError) as error:
        read_rows(bad, "ds/training/bad.jsonl")
    message = str(error.value)
    assert message.startswith("ds/training/bad.jsonl: 8 broken row(s): line 1: 'pos_doc' is missing")
    assert message.endswith("; and 3 more")


@pytest.mark.parametrize(
    "content, expected",
    [
        (b"", "has no rows"),
        (b"\xff\xfe not utf-8\n", "not UTF-8 text"),
    ],
)
def test_read_rows_rejects_empty_and_undecodable_files(tmp_path, content, expected):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(content)
    with pytest.raises(TripletFileError, match=expected):
        read_rows(path)


def test_read_rows_names_an_unreadable_file(tmp_path):
    with pytest.raises(TripletFileError, match="cannot be read"):
        read_rows(tmp_path / "missing.jsonl", "missing.jsonl")


def test_dumps_row_escapes_line_breaks_that_splitlines_would_cut(tmp_path):
    line = dumps_row("q\u2028x", "p\x85", ["n\u2029", 'quote " caf\u00e9'])
    assert line.endswith("\n")
    assert len(line.splitlines()) == 1
    assert json.loads(line) == {"query": "q\u2028x", "pos_doc": "p\x85", "neg_doc": ["n\u2029", 'quote " caf\u00e9']}
    path = tmp_path / "rows.jsonl"
    atomic_write_text(path, line * 2)
    assert len(read_rows(path, strict=True)) == 2


# ------------------------------------------------------------------------------------------------------- BEIR


def _write_beir(folder, *, gzipped: bool = False, split: str = "test"):
    corpus = (
        '{"_id": "d1", "title": "T", "text": "one"}\n'
        '{"_id": "d2", "title": null, "text": "two \u2028 lines"}\n'
        '{"_id": "d1", "title": "T", "text": "one again"}\n'
    )
    queries = '{"_id": "q1", "text": "first?"}\n{"_id": "q2", "text": "second?"}\n'
    qrels = "query-id\tcorpus-id\tscore\nq1\td1\t1\nq1\td2\t0\nq2\td2\t1.0\n"
    (folder / "qrels").mkdir(parents=True)
    for name, text in (("corpus.jsonl", corpus), ("queries.jsonl", queries), (f"qrels/{split}.tsv", qrels)):
        if gzipped and name != f"qrels/{split}.tsv":
            (folder / f"{name}.gz").write_bytes(gzip.compress(text.encode("utf-8")))
        else:
            (folder / name).write_text(text, encoding="utf-8")
    return folder


@pytest.mark.parametrize("gzipped", [False, True])
def test_read_beir_folder_plain_and_gzipped(tmp_path, gzipped):
    folder = _write_beir(tmp_path / "set", gzipped=gzipped)
    assert is_beir_folder(folder)
    assert is_beir_folder(folder, split="test")
    assert not is_beir_folder(folder, split="train")
    data = read_beir_folder(folder)
    assert list(data.corpus) == ["d1", "d2"]  # a repeated _id keeps its first position ...
    assert data.corpus["d1"] == ("T", "one again")  # ... and its last content
    assert data.corpus["d2"] == ("", "two \u2028 lines")  # a raw U+2028 does not cut the line
    assert data.queries == {"q1": "first?", "q2": "second?"}
    assert data.qrels == {"q1": {"d1": 1, "d2": 0}, "q2": {"d2": 1}}
    assert data.unknown_queries() == []
    assert data.unknown_documents() == []
    assert data.judged_documents() == 2


def test_read_beir_folder_lists_missing_files(tmp_path):
    folder = _write_beir(tmp_path / "set")
    (folder / "queries.jsonl").unlink()
    with pytest.raises(BeirFilesMissing) as error:
        read_beir_folder(folder, split="dev")
    assert error.value.missing == ["queries.jsonl", "qrels/dev.tsv"]
    assert error.value.folder == folder


@pytest.mark.parametrize(
    "corpus, queries, qrels, file, line, problem",
    [
        (
            '{"_id": "d1"}\n{broken\n',
            '{"_id": "q1", "text": "y"}\n',
            "q1\td1\t1\n",
            "corpus.jsonl",
            2,
            "not valid JSON",
        ),
        (
            '{"text": "x"}\n',
            '{"_id": "q1", "text": "y"}\n',
            "q1\td1\t1\n",
            "corpus.jsonl",
            1,
            "expected an object with an `_id` field",
        ),
        ('{"_id": "d1"}\n', '{"_id": "q1"}\n', "q1\td1\t1\n", "queries.jsonl", 1, "missing 'text' for query 'q1'"),
        (
            '{"_id": "d1"}\n',
            '{"_id": "q1", "text": "y"}\n',
            "h\th\th\nq1\td1\n",
            "qrels/test.tsv",
            2,
            "expected 3 tab-separated columns",
        ),
        (
            '{"_id": "d1"}\n',
            '{"_id": "q1", "text": "y"}\n',
            "h\th\th\nq1\td1\thigh\n",
            "qrels/test.tsv",
            2,
            "score 'high' is not a number",
        ),
        (
            '{"_id": "d1"}\n',
            '{"_id": "q1", "text": "y"}\n',
            "h\th\th\nq1\td1\t0.5\n",
            "qrels/test.tsv",
            2,
            "score '0.5' is not a number (an integer is expected)",
        ),
    ],
)
def test_parse_beir_errors_name_file_and_line(corpus, queries, qrels, file, line, problem):
    with pytest.raises(BeirFormatError) as error:
        parse_beir(corpus.encode(), queries.encode(), qrels.encode())
    assert error.value.file == file
    assert error.value.line == line
    assert error.value.problem.startswith(problem)
    assert str(error.value).startswith(f"{file}:{line}: {problem}")


def test_parse_beir_reports_unknown_ids_without_raising():
    data = parse_beir(b'{"_id": "d1"}\n', b'{"_id": "q1", "text": "y"}\n', b"q1\td1\t1\nq9\td9\t1\n")
    assert data.unknown_queries() == ["q9"]
    assert data.unknown_documents() == ["d9"]


def test_parse_qrels_reads_a_header_only_on_line_one():
    assert parse_qrels(b"\xef\xbb\xbfquery-id\tcorpus-id\tscore\r\nq\td\t2\r\n") == {"q": {"d": 2}}


def test_document_text():
    assert document_text("Title", "body") == "Title body"
    assert document_text(None, " body ") == "body"
    assert document_text("Title", None) == "Title"


# --------------------------------------------------------------------------------------------- NeMo statuses


def test_job_statuses():
    assert normalize_status(" RUNNING ") == "running"
    assert normalize_status("") == "unknown"
    assert job_status({"status": "ERROR"}) == "failed"  # some servers' word for failed
    assert is_terminal("completed")
    assert is_terminal({"status": "Cancelled"})
    assert is_terminal("error")
    assert not is_terminal("ready")  # jobs end only at completed, failed or cancelled
    assert not is_terminal({"status": "cancelling"})
    assert not is_terminal({})


def test_deployment_statuses_and_model():
    pending = {"status_details": {"status": "PENDING"}, "config": {"model": "ns/m@v1"}}
    assert deployment_status(pending) == "pending"
    assert not is_ready(pending)
    assert not is_failed(pending)
    assert is_ready({"status": "ready"})
    assert is_failed({"status_details": {"status": "lost"}})
    assert deployment_status(None) == "unknown"
    assert deployed_model(pending) == "ns/m@v1"
    assert deployed_model({"model": "ns/other"}) == "ns/other"
    assert deployed_model({"models": [{"id": "ns/third"}]}) == "ns/third"
    assert deployed_model({"models": ["ns/fourth"]}) == "ns/fourth"
    assert deployed_model({}) is None
