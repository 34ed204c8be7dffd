"""The API's SQLite database: keys, jobs and their rows, tenant banks, exemplars.

One file (``GRADER_API_DATABASE_URL``, ``sqlite:///path``) shared by the server and ``grader keys``.
WAL mode lets the CLI write keys while the server reads them; every write is one short transaction.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from grader.errors import GraderError

SCHEMA = """
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    tenant TEXT NOT NULL,
    scopes TEXT NOT NULL,
    secret_hash TEXT NOT NULL,
    rate_limit INTEGER,
    created_at REAL NOT NULL,
    revoked_at REAL
);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    key_id TEXT NOT NULL,
    state TEXT NOT NULL,
    input_format TEXT NOT NULL,
    plan TEXT NOT NULL,
    total INTEGER NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL
);
CREATE TABLE IF NOT EXISTS job_rows (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    row INTEGER NOT NULL,
    line INTEGER NOT NULL,
    input TEXT NOT NULL,
    problem TEXT,
    output TEXT,
    status TEXT,
    error TEXT,
    graded_at REAL,
    PRIMARY KEY (job_id, row)
);
CREATE INDEX IF NOT EXISTS job_rows_pending ON job_rows(job_id, output, row);
CREATE TABLE IF NOT EXISTS tenant_questions (
    tenant TEXT NOT NULL,
    bank TEXT NOT NULL,
    id TEXT NOT NULL,
    rubric TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    PRIMARY KEY (tenant, bank, id)
);
CREATE TABLE IF NOT EXISTS exemplars (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    question_id TEXT NOT NULL,
    answer TEXT NOT NULL,
    score REAL NOT NULL,
    lang TEXT,
    key_id TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


def sqlite_path(url: str) -> Path:
    """The file of a ``sqlite:///path`` URL (the only kind of database supported so far)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or len(url) == len(prefix):
        raise GraderError(f"GRADER_API_DATABASE_URL must look like sqlite:///path/to/api.sqlite, not {url!r}")
    return Path(url[len(prefix):])


class Database:
    """A SQLite connection shared by the server's threads; a lock keeps each transaction whole."""

    def __init__(self, url: str):
        self.path = sqlite_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(self.path, check_same_thread=False, timeout=30, isolation_level=None)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._conn.execute("PRAGMA synchronous=FULL")  # a committed job row survives a power cut too
        self._conn.executescript(SCHEMA)

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def query(self, sql: str, params: tuple | dict = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._conn.execute(sql, params).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()
