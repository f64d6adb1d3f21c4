"""The platform's durable state: JSON documents in SQLite.

Every entity (namespace, dataset, model, target, config, job, deployment) is one JSON document keyed by
(kind, id). Named entities use id ``namespace/name``; jobs use their job id. SQLite in WAL mode gives us
atomic, crash-safe updates, so a restarted platform sees every completed entity.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import sqlite3
import string
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable

from . import strict_json

_BASE62 = string.digits + string.ascii_letters
log = logging.getLogger("embed_ft.platform.store")
# Rows that may hold what older versions stored unchecked (NaN, Infinity, 1e999, lone-surrogate escapes).
_SUSPECT_ROW = re.compile(r"NaN|Infinity|\\u[dD][89a-fA-F]|[eE][+]?[0-9]{3}")


class AlreadyExists(Exception):
    """An entity with this (kind, id) exists."""


def utc_now() -> str:
    return datetime.now(timezone.utc).isoformat()


def new_id(prefix: str) -> str:
    """NeMo-style ids, e.g. ``cust-MZopzmY1UjbPcM5oZAqTwc`` (22 base62 characters)."""
    return f"{prefix}-" + "".join(secrets.choice(_BASE62) for _ in range(22))


class EntityStore:
    """Thread-safe JSON document store over one SQLite file.

    Documents are written with ``strict_json.dumps`` (``JSONValueError`` for NaN, Infinity, lone surrogates), so
    every stored row can be answered again; rows an older version stored unchecked are repaired when the store
    opens (non-finite numbers become null, lone surrogates U+FFFD), and a row that is not JSON at all is skipped by
    reads (and logged) instead of failing a whole list.
    """

    def __init__(self, db_path: Path):
        self.db_path = Path(db_path)
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
        self.repair()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @staticmethod
    def _row_to_doc(row: tuple) -> dict[str, Any] | None:
        try:
            return json.loads(row[0])
        except ValueError:
            log.error("skipping a stored document that is not JSON: %.200r", row[0])
            return None

    def repair(self) -> int:
        """Rewrite the rows that hold values JSON cannot carry back (stored by an older version); returns how
        many. Runs when the store opens (the serving process holds its home's lock then)."""
        fixed = 0
        with self._lock:
            rows = self._conn.execute("SELECT kind, id, data FROM entities").fetchall()
            for kind, id_, data in rows:
                if not _SUSPECT_ROW.search(data):
                    continue
                try:
                    doc = json.loads(data)
                except ValueError:
                    continue  # not JSON at all: reads skip it
                problem = strict_json.find_problem(doc)
                if problem is None:
                    continue
                doc = strict_json.repaired(doc)
                self._conn.execute("UPDATE entities SET data=? WHERE kind=? AND id=?",
                                   (strict_json.dumps(doc), kind, id_))
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
                    (kind, id, doc.get("namespace"), doc.get("name"), strict_json.dumps(doc), doc["created_at"], doc["updated_at"]),
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
                (kind, id, doc.get("namespace"), doc.get("name"), strict_json.dumps(doc), doc["created_at"], doc["updated_at"]),
            )
        return doc

    def get(self, kind: str, id: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT data FROM entities WHERE kind=? AND id=?", (kind, id)).fetchone()
        return self._row_to_doc(row) if row else None

    def update(self, kind: str, id: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """Merge ``patch`` into the top level of an existing document (atomically); None if absent."""
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                row = self._conn.execute("SELECT data FROM entities WHERE kind=? AND id=?", (kind, id)).fetchone()
                if row is None:
                    self._conn.execute("ROLLBACK")
                    return None
                doc = {**json.loads(row[0]), **patch, "updated_at": utc_now()}
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
        sql = "SELECT data FROM entities WHERE kind=?"
        args: list[Any] = [kind]
        if namespace is not None:
            sql += " AND namespace=?"
            args.append(namespace)
        sql += " ORDER BY created_at " + ("DESC" if newest_first else "ASC") + ", rowid"
        with self._lock:
            rows = self._conn.execute(sql, args).fetchall()
        return [doc for doc in map(self._row_to_doc, rows) if doc is not None]

    def kinds_with_status(self, kinds: Iterable[str], statuses: Iterable[str]) -> list[tuple[str, str, dict]]:
        """(kind, id, doc) of every document of ``kinds`` whose ``status`` is in ``statuses`` (lower case)."""
        wanted = {s.lower() for s in statuses}
        out = []
        with self._lock:
            for kind in kinds:
                for id_, data in self._conn.execute("SELECT id, data FROM entities WHERE kind=?", (kind,)).fetchall():
                    doc = self._row_to_doc((data,))
                    if doc is not None and str(doc.get("status", "")).lower() in wanted:
                        out.append((kind, id_, doc))
        return out
