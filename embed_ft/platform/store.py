"""The platform's durable state: JSON documents in SQLite.

Every entity (namespace, dataset, model, target, config, job, deployment) is one JSON document keyed by
(kind, id). Named entities use id ``namespace/name``; jobs use their job id. SQLite in WAL mode gives us
atomic, crash-safe updates, so a restarted platform sees every completed entity.

A row the platform cannot read back (not JSON, JSON that is not an object, nesting deep enough to exhaust the
reader's recursion), or whose document does not name it (a field of its kind's key missing, not text, or naming
another row; the timestamps the store writes missing) is *set aside*: moved to the ``quarantined`` table with the
reason, logged by kind and id, and listed by ``quarantined()`` (``embed-ft platform status`` shows them). The rest
of the home is served; the (kind, id) is free again, so the entity can be created anew; the row's text stays in the
table for a person to look at.
"""

from __future__ import annotations

import builtins
import json
import logging
import re
import secrets
import sqlite3
import string
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from . import strict_json

_BASE62 = string.digits + string.ascii_letters
log = logging.getLogger("embed_ft.platform.store")
# Rows that may hold what older versions stored unchecked (NaN, Infinity, 1e999, lone-surrogate escapes).
_SUSPECT_ROW = re.compile(r"NaN|Infinity|\\u[dD][89a-fA-F]|[eE][+]?[0-9]{3}")
QUARANTINE_TABLE = "quarantined"


class AlreadyExists(Exception):
    """An entity with this (kind, id) exists."""


class UnreadableRow(ValueError):
    """A stored row that cannot be read back as a document; the message says why."""


def decode_document(data: Any) -> dict[str, Any]:
    """The document a row's ``data`` holds; ``UnreadableRow`` naming the problem when it holds none."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8")
        except UnicodeDecodeError:
            raise UnreadableRow("the row holds bytes that are not UTF-8 text") from None
    if not isinstance(data, str):
        raise UnreadableRow(f"the row holds a {type(data).__name__}, not JSON text")
    try:
        doc = json.loads(data)
    except RecursionError:
        raise UnreadableRow("the JSON nests too deep to be read") from None
    except ValueError as exc:
        raise UnreadableRow(f"the row is not JSON ({exc}; {len(data)} characters, truncated?)") from None
    if not isinstance(doc, dict):
        raise UnreadableRow(f"the row is a JSON {type(doc).__name__}, not an object")
    if strict_json.depth_problem(doc) is not None:  # what the API refuses to store: deeper than its limit
        raise UnreadableRow(f"the JSON nests deeper than {strict_json.MAX_DEPTH} levels")
    return doc


def naming_problem(doc: dict[str, Any], id_: Any, key_fields: tuple[str, ...]) -> str | None:
    """Why ``doc`` cannot be the document of row ``id_`` whose key is its ``key_fields`` joined by ``/``; None when
    it can. Every document of a kind with a key carries the ``created_at`` and ``updated_at`` the store writes."""
    for field in (*key_fields, "created_at", "updated_at"):
        value = doc.get(field)
        if not isinstance(value, str) or not value:
            shown = "missing" if field not in doc else f"{json.dumps(value)[:40]}, not a name"
            return f"its field {field!r} is {shown}"
    named = "/".join(doc[field] for field in key_fields)
    if named != id_:
        return f"its fields {'/'.join(key_fields)} name {named[:120]!r}, not this row"
    return None


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def new_id(prefix: str) -> str:
    """NeMo-style ids, e.g. ``cust-MZopzmY1UjbPcM5oZAqTwc`` (22 base62 characters)."""
    return f"{prefix}-" + "".join(secrets.choice(_BASE62) for _ in range(22))


class EntityStore:
    """Thread-safe JSON document store over one SQLite file.

    Documents are written with ``strict_json.dumps`` (``JSONValueError`` for NaN, Infinity, lone surrogates), so
    every stored row can be answered again; rows an older version stored unchecked are repaired when the store
    opens (non-finite numbers become null, lone surrogates U+FFFD), and a row that cannot be read back is set aside
    (see the module docstring): when the store opens, and by any read that meets one later.
    """

    def __init__(self, db_path: Path, row_keys: Mapping[str, tuple[str, ...]] | None = None):
        """``row_keys``: for each kind, the document fields whose values, joined by ``/``, are a row's id; a row of
        such a kind whose document does not name it so is set aside (other kinds are not checked)."""
        self.db_path = Path(db_path)
        self.row_keys = dict(row_keys or {})
        self.db_path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(self.db_path, check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=FULL")
        self._conn.execute(
            """CREATE TABLE IF NOT EXISTS entities (
                   kind TEXT NOT NULL, id TEXT NOT NULL, namespace TEXT, name TEXT,
                   data TEXT NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL,
                   PRIMARY KEY (kind, id))"""
        )
        self._conn.execute(
            f"""CREATE TABLE IF NOT EXISTS {QUARANTINE_TABLE} (
                   kind, id, data, reason TEXT NOT NULL, quarantined_at TEXT NOT NULL)"""
        )
        self.set_aside_unreadable()
        self.repair()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def atomic(self) -> threading.RLock:
        """``with store.atomic():`` no other thread reads or writes the store inside the block, so a check and the
        write it guards are one step (the serving process is the only writer of its home: one server per home)."""
        return self._lock

    def document(self, kind: Any, id_: Any, data: Any) -> dict[str, Any]:
        """The document a row holds; ``UnreadableRow`` when it holds none or one that does not name the row."""
        doc = decode_document(data)
        key_fields = self.row_keys.get(kind)
        problem = naming_problem(doc, id_, key_fields) if key_fields else None
        if problem is not None:
            raise UnreadableRow(f"the document does not name its row: {problem}")
        return doc

    def _row_to_doc(self, kind: Any, id_: Any, data: Any) -> dict[str, Any] | None:
        """The document of one row, or None after setting an unreadable row aside."""
        try:
            return self.document(kind, id_, data)
        except UnreadableRow as exc:
            self.quarantine(kind, id_, str(exc))
            return None

    def quarantine(self, kind: Any, id_: Any, reason: str) -> None:
        """Set the row (kind, id) aside: move it to the quarantine table with ``reason`` and log it by name."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute("SELECT data FROM entities WHERE kind=? AND id=?", (kind, id_)).fetchone()
                if row is not None:
                    self._conn.execute(
                        f"INSERT INTO {QUARANTINE_TABLE} VALUES (?,?,?,?,?)", (kind, id_, row[0], reason, utc_now())
                    )
                    self._conn.execute("DELETE FROM entities WHERE kind=? AND id=?", (kind, id_))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        if row is not None:
            log.error(
                "set aside stored %s %.120r: %s (kept in table %s of %s)",
                kind,
                id_,
                reason,
                QUARANTINE_TABLE,
                self.db_path,
            )

    def set_aside_unreadable(self) -> int:
        """Set aside every row that cannot be read back (runs when the store opens); returns how many."""
        with self._lock:
            rows = self._conn.execute("SELECT kind, id, data FROM entities").fetchall()
        count = 0
        for kind, id_, data in rows:
            try:
                self.document(kind, id_, data)
            except UnreadableRow as exc:
                self.quarantine(kind, id_, str(exc))
                count += 1
        return count

    def each_row(self, kind: str, step: Callable[[str, dict[str, Any]], None], what: str) -> None:
        """Run ``step(id, doc)`` on every readable row of ``kind`` (a start-up pass: recovery, restore); a row on
        which it fails is set aside naming ``what`` and the error, and the pass goes on with the next row."""
        for id_, doc in self.rows(kind, newest_first=False):
            try:
                step(id_, doc)
            except Exception as exc:  # noqa: BLE001 - one bad row must not stop the start-up
                self.quarantine(kind, id_, f"{what} failed on it: {type(exc).__name__}: {str(exc)[:200]}")

    def quarantined_data(self, kind: str) -> list[str]:
        """The text of every row of ``kind`` set aside so far (what names a folder must keep it)."""
        with self._lock:
            rows = self._conn.execute(f"SELECT data FROM {QUARANTINE_TABLE} WHERE kind=?", (kind,)).fetchall()
        return [data if isinstance(data, str) else repr(data) for (data,) in rows]

    def quarantined(self) -> list[dict[str, str]]:
        """The rows set aside so far (kind, id, reason, when), oldest first."""
        with self._lock:
            rows = self._conn.execute(
                f"SELECT kind, id, reason, quarantined_at FROM {QUARANTINE_TABLE} ORDER BY rowid"
            ).fetchall()
        return [{"kind": str(kind), "id": str(id_), "reason": reason, "at": at} for kind, id_, reason, at in rows]

    def repair(self) -> int:
        """Rewrite the rows that hold values JSON cannot carry back (stored by an older version); returns how
        many. Runs when the store opens (the serving process holds its home's lock then)."""
        fixed = 0
        with self._lock:
            rows = self._conn.execute("SELECT kind, id, data FROM entities").fetchall()
            for kind, id_, data in rows:
                if not isinstance(data, str) or not _SUSPECT_ROW.search(data):
                    continue
                try:
                    doc = self.document(kind, id_, data)
                except UnreadableRow:
                    continue  # set aside when the store opened; reads set aside one that went bad since
                problem = strict_json.find_problem(doc)
                if problem is None:
                    continue
                doc = strict_json.repaired(doc)
                self._conn.execute(
                    "UPDATE entities SET data=? WHERE kind=? AND id=?", (strict_json.dumps(doc), kind, id_)
                )
                log.warning("repaired stored %s %r: %s: %s", kind, id_, *problem)
                fixed += 1
        return fixed

    def create(self, kind: str, id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Insert a new document; raises ``AlreadyExists``. Fills created_at/updated_at if missing."""
        now = utc_now()
        doc = {**data}
        doc.setdefault("created_at", now)
        doc.setdefault("updated_at", now)
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO entities VALUES (?,?,?,?,?,?,?)",
                    _entity_row(kind, id, doc),
                )
            except sqlite3.IntegrityError as exc:
                raise AlreadyExists(f"{kind} {id!r} already exists") from exc
        return doc

    def put(self, kind: str, id: str, data: dict[str, Any]) -> dict[str, Any]:
        """Insert or replace."""
        now = utc_now()
        doc = {**data}
        doc.setdefault("created_at", now)
        doc["updated_at"] = now
        with self._lock:
            self._conn.execute(
                "INSERT OR REPLACE INTO entities VALUES (?,?,?,?,?,?,?)",
                _entity_row(kind, id, doc),
            )
        return doc

    def get(self, kind: str, id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT data FROM entities WHERE kind=? AND id=?", (kind, id)).fetchone()
        return self._row_to_doc(kind, id, row[0]) if row else None

    def update(self, kind: str, id: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge ``patch`` into the top level of an existing document (atomically); None if absent."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute("SELECT data FROM entities WHERE kind=? AND id=?", (kind, id)).fetchone()
                if row is None:
                    self._conn.execute("ROLLBACK")
                    return None
                try:
                    stored = self.document(kind, id, row[0])
                except UnreadableRow:
                    self._conn.execute("ROLLBACK")
                    self._row_to_doc(kind, id, row[0])  # sets it aside
                    return None
                doc = {**stored, **patch, "updated_at": utc_now()}
                self._conn.execute(
                    "UPDATE entities SET data=?, namespace=?, name=?, updated_at=? WHERE kind=? AND id=?",
                    (strict_json.dumps(doc), doc.get("namespace"), doc.get("name"), doc["updated_at"], kind, id),
                )
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
        return doc

    def delete(self, kind: str, id: str) -> bool:
        with self._lock:
            cur = self._conn.execute("DELETE FROM entities WHERE kind=? AND id=?", (kind, id))
        return cur.rowcount > 0

    def list(self, kind: str, namespace: str | None = None, newest_first: bool = True) -> list[dict[str, Any]]:
        return [doc for _, doc in self.rows(kind, namespace, newest_first)]

    def rows(
        self, kind: str, namespace: str | None = None, newest_first: bool = True
    ) -> builtins.list[tuple[str, dict[str, Any]]]:
        """(id, document) of every readable row of ``kind`` (unreadable ones are set aside)."""
        sql = "SELECT id, data FROM entities WHERE kind=?"
        args: list[Any] = [kind]
        if namespace is not None:
            sql += " AND namespace=?"
            args.append(namespace)
        sql += " ORDER BY created_at " + ("DESC" if newest_first else "ASC") + ", rowid"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        docs = ((id_, self._row_to_doc(kind, id_, data)) for id_, data in rows)
        return [(id_, doc) for id_, doc in docs if doc is not None]

    def kinds_with_status(
        self, kinds: Iterable[str], statuses: Iterable[str]
    ) -> builtins.list[tuple[str, str, dict[str, Any]]]:
        """(kind, id, doc) of every document of ``kinds`` whose ``status`` is in ``statuses`` (lower case)."""
        wanted = {s.lower() for s in statuses}
        return [
            (kind, id_, doc)
            for kind in kinds
            for id_, doc in self.rows(kind, newest_first=False)
            if str(doc.get("status", "")).lower() in wanted
        ]


def _entity_row(kind: str, id: str, doc: dict[str, Any]) -> tuple[Any, ...]:
    """The ``entities`` row of a document: its kind, id, namespace, name, JSON and timestamps (insert and put)."""
    return (
        kind,
        id,
        doc.get("namespace"),
        doc.get("name"),
        strict_json.dumps(doc),
        doc["created_at"],
        doc["updated_at"],
    )
