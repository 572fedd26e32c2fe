"""The one persistence module: small JSON documents in SQLite.

Everything the suite keeps (clusters, service definitions and tokens of the local
runtime, job records, settings, trigger bookkeeping) is a JSON document addressed by
`(kind, key)`, optionally grouped under a `parent` (a service name for jobs, say).
One table is enough for these volumes and keeps schema migrations out of the way.

SQLite runs in WAL mode behind a single connection guarded by a re-entrant lock, so
concurrent request threads never interleave half-written changes; `transaction()`
groups several writes into one atomic unit.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_SCHEMA = """
CREATE TABLE IF NOT EXISTS documents (
    kind TEXT NOT NULL,
    key TEXT NOT NULL,
    parent TEXT NOT NULL DEFAULT '',
    created REAL NOT NULL,
    updated REAL NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, key)
);
CREATE INDEX IF NOT EXISTS documents_parent ON documents (kind, parent, created);
"""


class Store:
    """A thread-safe JSON document store backed by one SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._depth = 0

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    @contextmanager
    def transaction(self) -> Iterator[Store]:
        """Group writes: all of them land, or (on an exception) none does."""
        with self._lock:
            outer = self._depth == 0
            if outer:
                self._conn.execute("BEGIN IMMEDIATE")
            self._depth += 1
            try:
                yield self
            except BaseException:
                self._depth -= 1
                if outer:
                    self._conn.execute("ROLLBACK")
                raise
            self._depth -= 1
            if outer:
                self._conn.execute("COMMIT")

    def put(self, kind: str, key: str, doc: Any, parent: str = "") -> None:
        """Insert or replace a document, keeping its creation time on replace."""
        now = time.time()
        body = json.dumps(doc, separators=(",", ":"))
        with self._lock:
            self._conn.execute(
                "INSERT INTO documents (kind, key, parent, created, updated, body) VALUES (?,?,?,?,?,?) "
                "ON CONFLICT(kind, key) DO UPDATE SET parent=excluded.parent, updated=excluded.updated, "
                "body=excluded.body",
                (kind, key, parent, now, now, body),
            )

    def get(self, kind: str, key: str) -> Any | None:
        with self._lock:
            row = self._conn.execute(
                "SELECT body FROM documents WHERE kind=? AND key=?", (kind, key)
            ).fetchone()
        return None if row is None else json.loads(row[0])

    def delete(self, kind: str, key: str) -> bool:
        with self._lock:
            cur = self._conn.execute("DELETE FROM documents WHERE kind=? AND key=?", (kind, key))
        return cur.rowcount > 0

    def delete_children(self, kind: str, parent: str) -> int:
        with self._lock:
            cur = self._conn.execute("DELETE FROM documents WHERE kind=? AND parent=?", (kind, parent))
        return cur.rowcount

    def items(self, kind: str, parent: str | None = None) -> list[tuple[str, Any]]:
        """All `(key, doc)` of a kind (optionally one parent's), oldest first."""
        with self._lock:
            if parent is None:
                rows = self._conn.execute(
                    "SELECT key, body FROM documents WHERE kind=? ORDER BY created, key", (kind,)
                ).fetchall()
            else:
                rows = self._conn.execute(
                    "SELECT key, body FROM documents WHERE kind=? AND parent=? ORDER BY created, key",
                    (kind, parent),
                ).fetchall()
        return [(k, json.loads(b)) for k, b in rows]

    def values(self, kind: str, parent: str | None = None) -> list[Any]:
        return [doc for _, doc in self.items(kind, parent)]
