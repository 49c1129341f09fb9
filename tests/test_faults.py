"""Faults injected into real runs, each compared with a fault-free run's bytes.

Here: the device failing under a validation worker, simulated on the CPU the way a GPU
fails (the program raises torch.OutOfMemoryError or torch.AcceleratorError, and the worker
catches exactly those), through both CPU paths: validation inside the solver workers
(inline) and the dedicated per-device validation worker. kill -9 of workers is in
test_engine.py; the server-level faults are further down.
"""
from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest

from helpers import HI, JOB_SPEC, LO, SMALL, ndjson_results, wait_finished
from generator_core import GenerationSpec, Sample
from service.engine import Engine
from service.engine.faults import FAULT_ENV
from local_server import LocalServer

SPEC = GenerationSpec(level=2, min_flops=LO, max_flops=HI, seed=21)
COUNT, VICTIM = 16, 9


def run_lines(mode: str) -> tuple[list[str | None], Engine]:
    with Engine(solver_workers=1, device="cpu", cpu_validation=mode) as engine:
        lines = [o.json for o in engine.run(SPEC, range(COUNT))]
    return lines, engine


@pytest.fixture(scope="module")
def fault_free() -> list[str]:
    lines, engine = run_lines("inline")
    assert None not in lines and engine.progress.restarts == 0
    return lines


def inject(monkeypatch, tmp_path, kind: str, times: int):
    counter = tmp_path / "fired"
    monkeypatch.setenv(FAULT_ENV, f"{kind}:{VICTIM}:{counter}:{times}")
    return lambda: int(counter.read_text())


@pytest.mark.parametrize("mode", ["inline", "worker"])
@pytest.mark.parametrize("kind, times, restarts", [
    ("oom", 1, 0),     # out of memory once: caches emptied, retried in place
    ("oom", 2, 1),     # out of memory twice: a fresh worker (new allocator) retries it
    ("sticky", 1, 1),  # a poisoned context: the worker exits, a fresh one retries it
])
def test_a_passing_device_fault_leaves_no_trace(fault_free, monkeypatch, tmp_path, mode, kind, times, restarts):
    fired = inject(monkeypatch, tmp_path, kind, times)
    lines, engine = run_lines(mode)
    assert fired() == times
    assert engine.progress.restarts == restarts
    assert lines == fault_free


@pytest.mark.parametrize("mode", ["inline", "worker"])
@pytest.mark.parametrize("kind, times, restarts, reason", [
    # 2 tries in place, 2 on a fresh worker, which then goes on
    ("oom", 4, 1, "OutOfMemoryError: CUDA out of memory"),
    # the old worker, then a fresh one; each is poisoned and replaced
    ("sticky", 2, 2, "AcceleratorError: CUDA error: an illegal memory access"),
])
def test_an_attempt_that_never_fits_is_rejected_as_such(fault_free, monkeypatch, tmp_path, mode, kind, times,
                                                        restarts, reason):
    """The attempt keeps failing on a fresh worker too: it is rejected with the device's
    reason, the next attempt makes the sample, the run goes on, and no other index changes."""
    fired = inject(monkeypatch, tmp_path, kind, times)
    lines, engine = run_lines(mode)
    assert fired() == times
    assert engine.progress.restarts == restarts
    victim = Sample.model_validate_json(lines[VICTIM])
    assert victim.validation.passed and sum(reason in r for r in victim.rejected) == 1
    assert lines[:VICTIM] + lines[VICTIM + 1:] == fault_free[:VICTIM] + fault_free[VICTIM + 1:]


# -- the service -----------------------------------------------------------------------------
LOCK_HOLDER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")  # the write lock: every other writer waits (or times out)
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
conn.execute("ROLLBACK")
"""


def submit_and_wait_for(c: httpx.Client, completed: int, spec: dict = JOB_SPEC) -> str:
    job_id = c.post("/v1/jobs", json=spec).json()["id"]
    deadline = time.monotonic() + 120
    while c.get(f"/v1/jobs/{job_id}").json()["progress"]["completed"] < completed:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    return job_id


@pytest.mark.parametrize("seconds", [3, 13])  # shorter and longer than the store's 10 s busy_timeout
def test_sqlite_locked_by_another_process_mid_job(tmp_path, job_reference, seconds):
    """Another process holds the database's write lock mid-job. The service stays up (sync
    samples are served, writes that time out are answered 503 + Retry-After, never 500), and
    once the lock is gone the job completes with the fault-free bytes."""
    db = tmp_path / "locked.db"
    s = LocalServer(db, workers=1).start()
    try:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            job_id = submit_and_wait_for(c, 8)
            holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(db), str(seconds)],
                                      stdout=subprocess.PIPE, text=True)
            assert holder.stdout.readline().strip() == "locked"
            statuses = [c.post("/v1/jobs", json={**JOB_SPEC, "count": 1}).status_code,
                        c.get("/v1/samples", params={"level": 0, **SMALL}).status_code]
            assert holder.wait(timeout=60) == 0
            assert statuses[0] in (202, 503) and statuses[1] == 200, statuses
            job = wait_finished(c, job_id)
            assert job["state"] == "succeeded", job
            assert ndjson_results(c, job_id) == job_reference
    finally:
        assert s.stop() == 0, s.log()


def test_client_disconnecting_mid_stream(tmp_path, job_reference):
    """Clients that hang up mid-stream (a job's NDJSON results while it runs, a sync NDJSON
    batch): the server cancels only their streams; the job completes with the fault-free
    bytes and later requests are served normally."""
    s = LocalServer(tmp_path / "disconnect.db", workers=1).start()
    try:
        with httpx.Client(base_url=s.url, timeout=60) as c:
            job_id = submit_and_wait_for(c, 5)
            for method, path, body in (("GET", f"/v1/jobs/{job_id}/samples", None),
                                       ("POST", "/v1/samples", {"level": 2, "count": 16, "seed": 3, **SMALL})):
                with c.stream(method, path, json=body, headers={"Accept": "application/x-ndjson"}) as r:
                    assert r.status_code == 200
                    assert json.loads(next(r.iter_lines()))["index"] >= 0
                # leaving the block closes the connection with the rest unread
            raw = socket.create_connection(("127.0.0.1", s.port))  # a client that dies mid-request
            raw.sendall(f"GET /v1/jobs/{job_id}/samples HTTP/1.1\r\nHost: x\r\n"
                        "Accept: application/x-ndjson\r\n\r\n".encode())
            raw.recv(1024)
            raw.close()
            job = wait_finished(c, job_id)
            assert job["state"] == "succeeded", job
            assert ndjson_results(c, job_id) == job_reference
            batch = c.post("/v1/samples", json={"level": 2, "count": 4, "seed": 3, **SMALL}).json()
            assert [x["index"] for x in batch["samples"]] == [0, 1, 2, 3]
    finally:
        assert s.stop() == 0, s.log()


def test_sigterm_with_jobs_in_flight(tmp_path, job_reference):
    """SIGTERM while one job runs, a second waits and a sync stream is open: the server
    drains and exits cleanly; restarted on the same database, both jobs complete with the
    fault-free bytes, nothing lost or duplicated."""
    db = tmp_path / "term.db"
    s = LocalServer(db, workers=1).start()
    with httpx.Client(base_url=s.url, timeout=60) as c:
        running = submit_and_wait_for(c, 12)
        waiting = c.post("/v1/jobs", json=JOB_SPEC).json()["id"]
        with c.stream("POST", "/v1/samples", json={"level": 2, "count": 16, "seed": 3, **SMALL},
                      headers={"Accept": "application/x-ndjson"}) as r:
            lines = r.iter_lines()
            first = next(lines)
            s.proc.send_signal(signal.SIGTERM)
            lines = [first, *lines]  # the stream ends (early) instead of hanging
    assert s.stop() == 0, s.log()
    assert [json.loads(line)["index"] for line in lines] == list(range(len(lines)))
    s2 = LocalServer(db, workers=1).start()
    try:
        with httpx.Client(base_url=s2.url, timeout=60) as c:
            for job_id in (running, waiting):
                job = wait_finished(c, job_id)
                assert job["state"] == "succeeded" and job["progress"]["completed"] == JOB_SPEC["count"], job
                assert ndjson_results(c, job_id) == job_reference
    finally:
        assert s2.stop() == 0, s2.log()
