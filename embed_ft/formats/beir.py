"""BEIR datasets on disk: the one definition of their files, how they are parsed, and a document's text.

Layout of a BEIR folder: ``corpus.jsonl`` (``{"_id", "title", "text"}``), ``queries.jsonl`` (``{"_id", "text"}``),
``qrels/<split>.tsv`` (query-id, corpus-id, score; tab-separated, a header line), each optionally gzipped
(``corpus.jsonl.gz``). Parsing works on bytes (the local platform reads them from its repository store) and
`read_beir_folder` reads a folder. Rules follow BEIR's own loader: a repeated ``_id`` keeps its first position and
its last content; the first qrels line is skipped when it is a header.

Errors are structured, so that each caller words where the data came from: :class:`BeirFormatError` (file, line,
problem) for a malformed line, :class:`BeirFilesMissing` (folder, missing names) for absent files. What a caller
additionally requires of a set (every judged document in the corpus, at least one judgement...) it checks itself
on the parsed :class:`BeirFiles`, with `unknown_queries` / `unknown_documents`.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Iterator, NamedTuple, Optional

CORPUS_FILE = "corpus.jsonl"
QUERIES_FILE = "queries.jsonl"
DEFAULT_SPLIT = "test"
QRELS_HEADER = ("query-id", "corpus-id", "score")


def qrels_file(split: str = DEFAULT_SPLIT) -> str:
    return f"qrels/{split}.tsv"


def beir_files(split: str = DEFAULT_SPLIT) -> tuple[str, str, str]:
    """The three files of a BEIR set for one split, relative to its folder."""
    return (CORPUS_FILE, QUERIES_FILE, qrels_file(split))


def document_text(title: Any, text: Any, sep: str = " ") -> str:
    """The text a model sees for a BEIR document: BEIR's ``(title + sep + text).strip()``; missing parts are empty."""
    return ((title or "") + sep + (text or "")).strip()


class BeirFormatError(ValueError):
    """A malformed line of a BEIR file."""

    def __init__(self, file: str, line: int, problem: str) -> None:
        self.file = file
        self.line = line
        self.problem = problem
        super().__init__(f"{file}:{line}: {problem}")


class BeirFilesMissing(FileNotFoundError):
    """Files of a BEIR set that are absent from its folder (neither plain nor ``.gz``)."""

    def __init__(self, folder: Path, missing: list[str]) -> None:
        self.folder = Path(folder)
        self.missing = list(missing)
        super().__init__(f"BEIR folder {str(folder)!r} lacks {', '.join(missing)}")


class BeirFileTooLarge(ValueError):
    """A BEIR file larger than the reader's cap (``max_bytes``); for a ``.gz`` file, its decompressed size."""

    def __init__(self, path: Path, limit: int, packed: bool) -> None:
        self.path = Path(path)
        self.limit = limit
        what = "decompresses to more than" if packed else "is larger than"
        super().__init__(f"{self.path.name} {what} the limit of {limit} bytes")


# Decompression works in blocks of this size: a small .gz that inflates to gigabytes costs one block of memory.
_BLOCK = 1024 * 1024


def _gunzipped_size_over(path: Path, limit: int) -> bool:
    """Whether ``path`` decompresses to more than ``limit`` bytes (streamed: nothing is kept)."""
    size = 0
    with gzip.open(path, "rb") as stream:
        while size <= limit:
            block = stream.read(_BLOCK)
            if not block:
                return False
            size += len(block)
    return True


class BeirFiles(NamedTuple):
    """A BEIR set as parsed: every document and query of its files, and the split's judgements."""

    corpus: dict[str, tuple[str, str]]  # doc id -> (title, text), in file order
    queries: dict[str, str]  # query id -> text, every query of queries.jsonl
    qrels: dict[str, dict[str, int]]  # query id -> {doc id: score}, in file order

    def unknown_queries(self) -> list[str]:
        """Judged query ids missing from queries.jsonl, in qrels order."""
        return [qid for qid in self.qrels if qid not in self.queries]

    def unknown_documents(self) -> list[str]:
        """Judged document ids missing from the corpus, sorted."""
        return sorted({doc for docs in self.qrels.values() for doc in docs} - self.corpus.keys())

    def judged_documents(self) -> int:
        return len({doc for docs in self.qrels.values() for doc in docs})


def _lines(data: bytes) -> Iterator[tuple[int, str]]:
    # Split on "\n" only: a JSON string may hold a raw U+2028 or U+0085 that str.splitlines() would cut at.
    for number, text in enumerate(data.decode("utf-8-sig").split("\n"), start=1):
        if text.strip():
            yield number, text


def iter_jsonl_objects(data: bytes, file: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) of a corpus or queries file; every line must be an object with an ``_id``."""
    for number, text in _lines(data):
        try:
            row = json.loads(text)
        except json.JSONDecodeError as exc:
            raise BeirFormatError(file, number, f"not valid JSON ({exc.msg})") from None
        if not isinstance(row, dict) or row.get("_id") is None:
            raise BeirFormatError(file, number, "expected an object with an `_id` field")
        yield number, row


def _text_field(value: Any) -> str:
    return value if isinstance(value, str) else ""


def parse_corpus(data: bytes, file: str = CORPUS_FILE) -> dict[str, tuple[str, str]]:
    """doc id -> (title, text); a title or text that is not a string counts as empty."""
    corpus: dict[str, tuple[str, str]] = {}
    for _, row in iter_jsonl_objects(data, file):
        corpus[str(row["_id"])] = (_text_field(row.get("title")), _text_field(row.get("text")))
    return corpus


def parse_queries(data: bytes, file: str = QUERIES_FILE) -> dict[str, str]:
    """query id -> text; a query without a string ``text`` is an error."""
    queries: dict[str, str] = {}
    for number, row in iter_jsonl_objects(data, file):
        if not isinstance(row.get("text"), str):
            raise BeirFormatError(file, number, f"missing 'text' for query {row['_id']!r}")
        queries[str(row["_id"])] = row["text"]
    return queries


def _score(text: str) -> Optional[int]:
    try:
        return int(text)
    except ValueError:
        pass
    try:
        value = float(text)
    except ValueError:
        return None
    return int(value) if value.is_integer() else None


def parse_qrels(data: bytes, file: str = qrels_file()) -> dict[str, dict[str, int]]:
    """query id -> {doc id: score} from tab-separated (query-id, corpus-id, score) lines; line 1 may be a header."""
    qrels: dict[str, dict[str, int]] = {}
    for number, text in _lines(data):
        fields = [field.strip() for field in text.split("\t")]
        if len(fields) < 3:
            raise BeirFormatError(
                file, number, f"expected 3 tab-separated columns (query-id, corpus-id, score), got {len(fields)}"
            )
        score = _score(fields[2])
        if score is None:
            if number == 1:  # the header line ("query-id corpus-id score"), which BEIR skips
                continue
            raise BeirFormatError(file, number, f"score {fields[2]!r} is not a number (an integer is expected)")
        qrels.setdefault(fields[0], {})[fields[1]] = score
    return qrels


def parse_beir(corpus: bytes, queries: bytes, qrels: bytes, *, qrels_name: str = qrels_file()) -> BeirFiles:
    """Parse the three files of a BEIR set; :class:`BeirFormatError` names the file and line of a malformed one."""
    return BeirFiles(
        corpus=parse_corpus(corpus, CORPUS_FILE),
        queries=parse_queries(queries, QUERIES_FILE),
        qrels=parse_qrels(qrels, qrels_name),
    )


def read_maybe_gz(folder: Path, name: str, max_bytes: Optional[int] = None) -> Optional[bytes]:
    """The bytes of ``folder/name``, or of ``folder/name.gz`` decompressed; None when neither exists.

    With ``max_bytes``, a file (decompressed) larger than that raises :class:`BeirFileTooLarge`; a ``.gz`` file is
    measured by streaming it first, so that a decompression bomb never takes more than one block of memory.
    """
    plain, packed = Path(folder) / name, Path(folder) / (name + ".gz")
    if plain.is_file():
        if max_bytes is not None and plain.stat().st_size > max_bytes:
            raise BeirFileTooLarge(plain, max_bytes, packed=False)
        return plain.read_bytes()
    if packed.is_file():
        if max_bytes is not None and _gunzipped_size_over(packed, max_bytes):
            raise BeirFileTooLarge(packed, max_bytes, packed=True)
        with gzip.open(packed, "rb") as stream:
            return stream.read()
    return None


def is_beir_folder(folder: str | Path, split: Optional[str] = None) -> bool:
    """A folder in BEIR layout: corpus and queries files and a qrels/ folder (holding ``<split>.tsv`` if given)."""
    folder = Path(folder).expanduser()
    names = (CORPUS_FILE, QUERIES_FILE) + ((qrels_file(split),) if split else ())
    present = all((folder / n).is_file() or (folder / f"{n}.gz").is_file() for n in names)
    return present and (folder / "qrels").is_dir()


def read_beir_folder(folder: str | Path, split: str = DEFAULT_SPLIT) -> BeirFiles:
    """Read and parse a BEIR folder; :class:`BeirFilesMissing` lists the absent files.

    Error locations name the files by their full path.
    """
    folder = Path(folder).expanduser()
    read = {name: read_maybe_gz(folder, name) for name in beir_files(split)}
    missing = [name for name, data in read.items() if data is None]
    if missing:
        raise BeirFilesMissing(folder, missing)
    contents = {name: data for name, data in read.items() if data is not None}
    corpus_name, queries_name, qrels_name = beir_files(split)
    return BeirFiles(
        corpus=parse_corpus(contents[corpus_name], str(folder / corpus_name)),
        queries=parse_queries(contents[queries_name], str(folder / queries_name)),
        qrels=parse_qrels(contents[qrels_name], str(folder / qrels_name)),
    )
