"""JobStore keeps jobs and results in SQLite exactly, across threads, processes and restarts."""
from __future__ import annotations

import json
import random
import sqlite3
import subprocess
import sys
import threading
import time

import pytest

from service.jobs.store import IdempotencyConflict, JobRecord, JobStore


@pytest.fixture
def db(tmp_path):
    return str(tmp_path / "jobs.sqlite")


@pytest.fixture
def store(db):
    s = JobStore(db)
    yield s
    s.close()


def make(store, job_id, now, **kw):
    return store.create_job(job_id=job_id, spec_json=f'{{"seed": "{job_id}"}}', total=10, now=now, **kw)


def test_create_get_list_count_round_trip(store):
    """Created jobs come back intact; list is newest first, filters by state and pages."""
    job = store.create_job(job_id="a", spec_json='{"level": 2,  "ops": ["ReLU"]}', total=5, now=100.0,
                           idempotency_key="k", request_hash="h")
    assert job == JobRecord("a", "queued", '{"level": 2,  "ops": ["ReLU"]}', 5, 0, 0, 100.0,
                            None, None, None, "k", "h")
    assert store.get_job(job_id="a") == job
    assert store.get_job(job_id="missing") is None
    for i, t in enumerate([103.0, 101.0, 102.0]):
        make(store, f"j{i}", t)
    store.set_job_state(job_id="j1", state="running", now=104.0)
    assert [j.id for j in store.list_jobs()] == ["j0", "j2", "j1", "a"]
    assert [j.id for j in store.list_jobs(offset=1, limit=2)] == ["j2", "j1"]
    assert [j.id for j in store.list_jobs(state="queued")] == ["j0", "j2", "a"]
    assert store.count_jobs() == 4 and store.count_jobs(state="running") == 1
    assert store.count_jobs_by_state() == {"queued": 3, "running": 1, "succeeded": 0, "failed": 0,
                                           "cancelling": 0, "cancelled": 0}
    assert store.find_job_by_idempotency_key(key="k") == job
    assert store.find_job_by_idempotency_key(key="nope") is None


def test_state_transitions_set_timestamps(store):
    """running sets started_at once; terminal states set finished_at; unknown states are rejected."""
    make(store, "a", 1.0)
    store.set_job_state(job_id="a", state="running", now=2.0)
    store.set_job_state(job_id="a", state="running", now=3.0)  # a resume must keep the first start
    job = store.get_job(job_id="a")
    assert (job.state, job.started_at, job.finished_at) == ("running", 2.0, None)
    store.set_job_state(job_id="a", state="cancelling", now=4.0)
    assert store.get_job(job_id="a").finished_at is None
    store.set_job_state(job_id="a", state="failed", now=5.0, error="boom")
    job = store.get_job(job_id="a")
    assert (job.state, job.started_at, job.finished_at, job.error) == ("failed", 2.0, 5.0, "boom")
    with pytest.raises(ValueError):
        store.set_job_state(job_id="a", state="done", now=6.0)
    assert store.get_job(job_id="a").state == "failed"
    with pytest.raises(KeyError):
        store.set_job_state(job_id="missing", state="running", now=6.0)


def test_add_result_idempotent_counts_and_bytes(store):
    """Results insert once, count completed vs failed exactly, page in order and keep their exact text."""
    make(store, "a", 1.0)
    samples = [json.dumps({"code": f"x = {i}\nprint('héllo ✓ 日本')", "i": i}, ensure_ascii=False)
               for i in range(4)]
    samples[1] = json.dumps({"code": "y\n\t= 'ünï'"})  # ASCII-escaped form must survive too
    samples[2] = '{"spacing" :  1,"order":[3 ,1]}'  # non-canonical JSON is not re-serialised
    for pos, text in enumerate(samples):
        assert store.add_result(job_id="a", position=pos, index=50 + pos, sample_json=text) is True
    assert store.add_result(job_id="a", position=4, index=54, error="validation failed") is True
    assert store.add_result(job_id="a", position=1, index=51, sample_json="{}") is False
    assert store.add_result(job_id="a", position=4, index=54, sample_json="{}") is False
    job = store.get_job(job_id="a")
    assert (job.completed, job.failed) == (4, 1)
    assert store.stored_positions(job_id="a") == 5
    rows = store.read_results(job_id="a")
    assert rows == [(p, 50 + p, s, None) for p, s in enumerate(samples)] + [(4, 54, None, "validation failed")]
    assert [r[2].encode() for r in rows[:4]] == [s.encode() for s in samples]
    assert store.read_results(job_id="a", offset=2, limit=2) == rows[2:4]
    with pytest.raises(ValueError):
        store.add_result(job_id="a", position=5, index=55)
    with pytest.raises(ValueError):
        store.add_result(job_id="a", position=5, index=55, sample_json="{}", error="x")


def test_idempotency_key_conflict_carries_existing_job(store):
    """A second create with a used key raises IdempotencyConflict holding the first job."""
    first = make(store, "a", 1.0, idempotency_key="key-1", request_hash="h1")
    make(store, "b", 2.0)  # jobs without a key never conflict with each other
    make(store, "c", 3.0)
    with pytest.raises(IdempotencyConflict) as exc:
        make(store, "d", 4.0, idempotency_key="key-1", request_hash="h2")
    assert exc.value.job == first
    assert store.get_job(job_id="d") is None
    with pytest.raises(sqlite3.IntegrityError):
        make(store, "a", 5.0)  # a duplicate id is not an idempotency conflict


def test_persists_across_reopen_in_wal_mode(db):
    """A new JobStore on the same file sees jobs and results; the file is in WAL mode."""
    s = JobStore(db)
    make(s, "a", 1.0, idempotency_key="k")
    s.set_job_state(job_id="a", state="running", now=2.0)
    s.add_result(job_id="a", position=0, index=7, sample_json='{"é": 1}')
    s.add_result(job_id="a", position=1, index=8, error="bad")
    before = s.get_job(job_id="a")
    s.close()
    s = JobStore(db)
    try:
        assert s.get_job(job_id="a") == before
        assert (before.completed, before.failed) == (1, 1)
        assert s.read_results(job_id="a") == [(0, 7, '{"é": 1}', None), (1, 8, None, "bad")]
        assert s.stored_positions(job_id="a") == 2
    finally:
        s.close()
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_unfinished_delete_and_expire(store):
    """unfinished_jobs lists resumable jobs oldest first; delete and expire remove jobs with their results."""
    for i, state in enumerate(["running", "succeeded", "queued", "failed", "cancelling", "cancelled"]):
        make(store, f"j{i}", 10.0 - i)
        store.add_result(job_id=f"j{i}", position=0, index=0, sample_json="{}")
        if state != "queued":
            store.set_job_state(job_id=f"j{i}", state=state, now=20.0 + i)
    assert [j.id for j in store.unfinished_jobs()] == ["j4", "j2", "j0"]
    assert store.delete_job(job_id="j2") is True
    assert store.delete_job(job_id="j2") is False
    assert store.read_results(job_id="j2") == [] and store.stored_positions(job_id="j2") == 0
    # finished_at: j1=21, j3=23, j5=25; only those strictly before 25 expire
    assert store.expire_jobs(finished_before=25.0) == 2
    assert sorted(j.id for j in store.list_jobs()) == ["j0", "j4", "j5"]
    assert store.read_results(job_id="j1") == [] and store.read_results(job_id="j3") == []
    assert store.stored_positions(job_id="j5") == 1
    assert store.expire_jobs(finished_before=25.0) == 0


def test_concurrent_writers_lose_nothing(store):
    """4 threads inserting the same 200 positions in random orders store each exactly once."""
    make(store, "a", 1.0)
    n, inserted, errors = 200, [], []
    barrier = threading.Barrier(4)

    def work(seed):
        order = list(range(n))
        random.Random(seed).shuffle(order)
        barrier.wait()
        try:
            inserted.append(sum(store.add_result(job_id="a", position=p, index=p, sample_json=f'{{"p": {p}}}')
                                for p in order))
        except Exception as e:  # surfaced below; a thread's exception would otherwise vanish
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and sum(inserted) == n
    assert store.get_job(job_id="a").completed == n == store.stored_positions(job_id="a")
    assert [r[0] for r in store.read_results(job_id="a", limit=n)] == list(range(n))


LOCK_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN IMMEDIATE")
conn.execute("INSERT INTO results (job_id, position, \\"index\\", sample_json) VALUES ('a', 0, 0, '{}')")
conn.execute("UPDATE jobs SET completed = completed + 1 WHERE id = 'a'")
print("locked", flush=True)
time.sleep(1.0)
conn.execute("COMMIT")
"""


def test_waits_for_another_process_write_lock(store, db):
    """While another process holds the write lock for ~1 s, add_result waits (busy_timeout) and both rows persist."""
    make(store, "a", 1.0)
    child = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, db], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "locked"
        start = time.monotonic()
        assert store.add_result(job_id="a", position=1, index=1, sample_json='{"late": true}') is True
        waited = time.monotonic() - start
    finally:
        assert child.wait(timeout=30) == 0
    assert waited > 0.5
    assert store.read_results(job_id="a") == [(0, 0, "{}", None), (1, 1, '{"late": true}', None)]
    assert store.get_job(job_id="a").completed == 2
