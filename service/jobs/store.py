"""SQLite persistence for asynchronous generation jobs and their results.

One connection shared by the service's threads, serialised by a lock; other processes
(a second server, an admin shell) are handled by SQLite's own locking plus busy_timeout.
Spec and sample JSON are stored as TEXT verbatim: results must come back byte-identical
to what a CLI run prints.
"""
from __future__ import annotations

import logging
import sqlite3
import threading
from dataclasses import dataclass

from service.logs import log_event

log = logging.getLogger("tcgen.jobs")

STATES = ("queued", "running", "succeeded", "failed", "cancelling", "cancelled")
FINISHED = ("succeeded", "failed", "cancelled")
UNFINISHED = ("queued", "running", "cancelling")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    spec_json TEXT NOT NULL,
    total INTEGER NOT NULL,
    completed INTEGER NOT NULL DEFAULT 0,
    failed INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    started_at REAL,
    finished_at REAL,
    error TEXT,
    idempotency_key TEXT,
    request_hash TEXT
);
-- UNIQUE index: SQLite treats NULLs as distinct, so jobs without a key never collide.
CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency_key ON jobs(idempotency_key);
CREATE INDEX IF NOT EXISTS jobs_state_created ON jobs(state, created_at);
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
CREATE TABLE IF NOT EXISTS results (
    job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE,
    position INTEGER NOT NULL,
    "index" INTEGER NOT NULL,
    sample_json TEXT,
    error TEXT,
    PRIMARY KEY (job_id, position)
) WITHOUT ROWID;
"""

_COLUMNS = ("id, state, spec_json, total, completed, failed, created_at, started_at, "
            "finished_at, error, idempotency_key, request_hash")


@dataclass(frozen=True)
class JobRecord:
    id: str
    state: str
    spec_json: str
    total: int
    completed: int
    failed: int
    created_at: float
    started_at: float | None
    finished_at: float | None
    error: str | None
    idempotency_key: str | None
    request_hash: str | None


class IdempotencyConflict(Exception):
    """A job with this idempotency key exists; `.job` is it (the caller compares request_hash)."""

    def __init__(self, job: JobRecord):
        super().__init__(f"idempotency key {job.idempotency_key!r} already used by job {job.id}")
        self.job = job


class JobStore:
    def __init__(self, path: str):
        # isolation_level=None: no implicit transactions; multi-statement writes use an
        # explicit BEGIN IMMEDIATE so they take the write lock up front (and wait on
        # busy_timeout there) instead of failing to upgrade a read lock midway.
        self._conn = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._conn.execute("PRAGMA busy_timeout = 10000")
            self._conn.execute("PRAGMA journal_mode = WAL")
            self._conn.execute("PRAGMA synchronous = NORMAL")  # safe under WAL; fsync per checkpoint
            self._conn.execute("PRAGMA foreign_keys = ON")
            self._conn.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _one(self, where: str, args: tuple) -> JobRecord | None:
        row = self._conn.execute(f"SELECT {_COLUMNS} FROM jobs WHERE {where}", args).fetchone()
        return JobRecord(*row) if row else None

    def _many(self, sql: str, args: tuple) -> list[JobRecord]:
        return [JobRecord(*row) for row in self._conn.execute(f"SELECT {_COLUMNS} FROM jobs {sql}", args)]

    def create_job(self, *, job_id: str, spec_json: str, total: int, now: float,
                   idempotency_key: str | None = None, request_hash: str | None = None) -> JobRecord:
        with self._lock:
            try:
                self._conn.execute(
                    "INSERT INTO jobs (id, state, spec_json, total, created_at, idempotency_key, request_hash)"
                    " VALUES (?, 'queued', ?, ?, ?, ?, ?)",
                    (job_id, spec_json, total, now, idempotency_key, request_hash))
            except sqlite3.IntegrityError:
                # The unique index, not a prior SELECT, decides: another process may race us.
                existing = idempotency_key is not None and self._one("idempotency_key = ?", (idempotency_key,))
                if existing:
                    raise IdempotencyConflict(existing) from None
                raise  # duplicate job id: a caller bug, not a conflict to report to clients
            job = self._one("id = ?", (job_id,))
        log_event(log, logging.INFO, "job.state", f"job {job_id} queued", job_id=job_id, state="queued", total=total)
        return job

    def get_job(self, *, job_id: str) -> JobRecord | None:
        with self._lock:
            return self._one("id = ?", (job_id,))

    def find_job_by_idempotency_key(self, *, key: str) -> JobRecord | None:
        with self._lock:
            return self._one("idempotency_key = ?", (key,))

    def list_jobs(self, *, state: str | None = None, offset: int = 0, limit: int = 100) -> list[JobRecord]:
        where, args = ("WHERE state = ?", (state,)) if state is not None else ("", ())
        with self._lock:
            return self._many(f"{where} ORDER BY created_at DESC, id LIMIT ? OFFSET ?", (*args, limit, offset))

    def count_jobs(self, *, state: str | None = None) -> int:
        where, args = ("WHERE state = ?", (state,)) if state is not None else ("", ())
        with self._lock:
            return self._conn.execute(f"SELECT count(*) FROM jobs {where}", args).fetchone()[0]

    def count_jobs_by_state(self) -> dict[str, int]:
        with self._lock:
            counts = dict(self._conn.execute("SELECT state, count(*) FROM jobs GROUP BY state"))
        return {state: counts.get(state, 0) for state in STATES}

    def set_job_state(self, *, job_id: str, state: str, now: float, error: str | None = None) -> None:
        """Move a job to `state`; `error` (if given) replaces the stored one. KeyError if absent."""
        if state not in STATES:
            raise ValueError(f"unknown job state {state!r}; expected one of {', '.join(STATES)}")
        with self._lock:
            cur = self._conn.execute(
                "UPDATE jobs SET state = ?, error = coalesce(?, error),"
                " started_at = CASE WHEN ? = 'running' THEN coalesce(started_at, ?) ELSE started_at END,"
                " finished_at = CASE WHEN ? IN ('succeeded', 'failed', 'cancelled') THEN ? ELSE finished_at END"
                " WHERE id = ?",
                (state, error, state, now, state, now, job_id))
            if cur.rowcount == 0:
                raise KeyError(job_id)
        log_event(log, logging.WARNING if state == "failed" else logging.INFO, "job.state", f"job {job_id} {state}",
                  job_id=job_id, state=state, **({"error": error} if error else {}))

    def add_result(self, *, job_id: str, position: int, index: int,
                   sample_json: str | None = None, error: str | None = None) -> bool:
        if (sample_json is None) == (error is None):
            raise ValueError("exactly one of sample_json and error must be given")
        with self._lock:
            # Insert and counter bump in one transaction, so completed/failed stay exact.
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                cur = self._conn.execute(
                    'INSERT OR IGNORE INTO results (job_id, position, "index", sample_json, error)'
                    " VALUES (?, ?, ?, ?, ?)", (job_id, position, index, sample_json, error))
                inserted = cur.rowcount == 1  # 0: already stored by an earlier (crashed) run
                if inserted:
                    column = "completed" if error is None else "failed"
                    self._conn.execute(f"UPDATE jobs SET {column} = {column} + 1 WHERE id = ?", (job_id,))
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            return inserted

    def stored_positions(self, *, job_id: str) -> int:
        with self._lock:
            return self._conn.execute("SELECT count(*) FROM results WHERE job_id = ?", (job_id,)).fetchone()[0]

    def read_results(self, *, job_id: str, offset: int = 0,
                     limit: int = 100) -> list[tuple[int, int, str | None, str | None]]:
        with self._lock:
            return self._conn.execute(
                'SELECT position, "index", sample_json, error FROM results WHERE job_id = ?'
                " ORDER BY position LIMIT ? OFFSET ?", (job_id, limit, offset)).fetchall()

    def unfinished_jobs(self) -> list[JobRecord]:
        with self._lock:
            return self._many("WHERE state IN (?, ?, ?) ORDER BY created_at, id", UNFINISHED)

    def delete_job(self, *, job_id: str) -> bool:
        with self._lock:
            # Results go with the job through ON DELETE CASCADE (foreign_keys is on).
            return self._conn.execute("DELETE FROM jobs WHERE id = ?", (job_id,)).rowcount == 1

    def expire_jobs(self, *, finished_before: float) -> int:
        with self._lock:
            return self._conn.execute(
                "DELETE FROM jobs WHERE state IN (?, ?, ?) AND finished_at < ?",
                (*FINISHED, finished_before)).rowcount
