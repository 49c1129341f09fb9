"""The one thread that drives the engine for the service: sync requests first, then jobs,
a chunk of indices at a time, every result of a job stored as it arrives.

Why one thread and chunks: the engine runs one spec at a time over all its workers, so
the service interleaves. A sync request waits at most for the chunk in progress; a job
resumes from what its store holds, so a stop (cancel, SIGTERM, a crash) between or inside
chunks loses nothing: a sample is a pure function of (spec, index), and a redone index
gives the same bytes.
"""
from __future__ import annotations

import logging
import queue
import sqlite3
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

from generator_core import GenerationSpec
from service.engine import Engine, EngineError, Outcome
from service.jobs.store import JobStore
from service.metrics import Metrics
from service.settings import Settings


log = logging.getLogger("tcgen.dispatcher")
STORE_RETRY_S = 1.0


class QueueFull(Exception):
    """Too much work is waiting: the caller answers 429 with Retry-After."""


@dataclass
class SyncRequest:
    spec: GenerationSpec
    indices: range
    deliver: Callable[[Outcome | None], None]  # each outcome in order, then None
    cancelled: bool = False


@dataclass
class _JobRun:
    job_id: str
    spec: GenerationSpec
    cancel: bool = False


@dataclass
class Dispatcher:
    settings: Settings
    store: JobStore
    metrics: Metrics
    engine_factory: Callable[[], Engine]
    draining: bool = False
    _sync: queue.Queue = field(default_factory=queue.Queue)
    _runs: dict[str, _JobRun] = field(default_factory=dict)  # in submission order: the first runs
    _reserved: int = 0  # places in the job queue held by job_slot() for a job being created
    _wake: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _thread: threading.Thread | None = None
    _engine: Engine | None = None
    ready: threading.Event = field(default_factory=threading.Event)
    fatal: str | None = None

    # -- lifecycle (called by the app) ------------------------------------------------
    def start(self) -> None:
        """Resume unfinished jobs (a restart after a crash or SIGTERM), then run."""
        now = time.time()
        for job in self.store.unfinished_jobs():
            if job.state == "cancelling":
                self.store.set_job_state(job_id=job.id, state="cancelled", now=now)
            else:
                self._enqueue(job.id, GenerationSpec.model_validate_json(job.spec_json))
        self._thread = threading.Thread(target=self._main, name="tcgen-dispatcher", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 60.0) -> None:
        """Stop taking work; the chunk in progress stops early; stored results stay and
        unfinished jobs stay queued or running in the store, to resume at the next start."""
        self.draining = True
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)

    # -- requests (called from the event loop's threads) ---------------------------------
    def submit_sync(self, spec: GenerationSpec, deliver: Callable[[Outcome | None], None]) -> SyncRequest:
        if self.draining:
            raise QueueFull("the service is shutting down")
        if self._sync.qsize() >= self.settings.max_pending_sync:
            raise QueueFull(f"{self._sync.qsize()} sync requests are waiting")
        request = SyncRequest(spec, range(spec.start_index, spec.start_index + spec.count), deliver)
        self._sync.put(request)
        self._wake.set()
        return request

    def submit_job(self, job_id: str, spec: GenerationSpec) -> None:
        self._enqueue(job_id, spec)
        self._wake.set()

    @contextmanager
    def job_slot(self) -> Iterator[Callable[[str, GenerationSpec], None]]:
        """A place in the job queue, held from the cap check until the job is queued, so that
        concurrent submissions cannot all pass the check (TCGEN_MAX_QUEUED_JOBS) before any
        of them is queued. QueueFull when the queue is full; else yields `submit_job`, to be
        called once the job is stored. The place is given back on leaving, submitted or not.

            with dispatcher.job_slot() as submit:  # QueueFull: answer 429
                job = store.create_job(...)
                submit(job.id, spec)
        """
        with self._lock:
            if len(self._runs) + self._reserved >= self.settings.max_queued_jobs:
                raise QueueFull(f"{self.settings.max_queued_jobs} jobs are queued or running")
            self._reserved += 1
        try:
            yield self.submit_job
        finally:
            with self._lock:
                self._reserved -= 1

    def cancel_job(self, job_id: str) -> None:
        with self._lock:
            run = self._runs.get(job_id)
            if run is not None:
                run.cancel = True
        self._wake.set()

    def queued_jobs(self) -> int:
        with self._lock:
            return len(self._runs)

    def _enqueue(self, job_id: str, spec: GenerationSpec) -> None:
        with self._lock:
            self._runs[job_id] = _JobRun(job_id, spec)

    # -- the thread -----------------------------------------------------------------------
    def _main(self) -> None:
        try:
            self._engine = self.engine_factory()
            with self._engine:
                self._engine.start(validation=True)
                self._engine.wait_ready(timeout=300)
                self.ready.set()
                self._loop()
        except EngineError as exc:  # a worker cannot even start: nothing can be served
            self.fatal = str(exc)
        finally:
            self.ready.clear()

    def _loop(self) -> None:
        last_expiry = float("-inf")  # the first pass expires at once: a restart may find old jobs
        syncs_in_a_row = 0
        while not self.draining:
            self._update_gauges()
            try:
                if time.monotonic() - last_expiry >= self.settings.expiry_interval_seconds:
                    last_expiry = time.monotonic()
                    self.store.expire_jobs(finished_before=time.time() - self.settings.job_ttl_seconds)
                with self._lock:
                    job_id = next(iter(self._runs), None)
                # Sync requests first, but not forever: under a steady stream of them a job
                # would never run (measured with bench.load: 30 jobs, 0 job samples in 60 s).
                if not self._sync.empty() and (job_id is None or syncs_in_a_row < self.settings.sync_burst):
                    syncs_in_a_row += 1
                    self._run_sync(self._sync.get_nowait())
                    continue
                if job_id is not None:
                    try:
                        self._run_job_chunk(job_id, guaranteed=self.settings.job_turn if syncs_in_a_row else 0)
                    except sqlite3.OperationalError:
                        raise  # the store, not the job: retried below
                    except Exception as exc:  # a bug must fail its job, not stop the service
                        log.exception("job %s failed", job_id)
                        self._fail(job_id, f"internal error: {type(exc).__name__}: {exc}"[:500])
                    syncs_in_a_row = 0
                    continue
            except sqlite3.OperationalError as exc:
                # The database is locked past busy_timeout (another process holds it) or
                # briefly unwritable: nothing is lost, as a job resumes from what its store
                # holds, and a redone index gives the same bytes. Wait, then try again.
                log.warning("job store unavailable (%s); retrying in %s s", exc, STORE_RETRY_S)
                self._wake.wait(STORE_RETRY_S)
                continue
            self._wake.wait(0.5)
            self._wake.clear()

    def _update_gauges(self) -> None:
        self.metrics.queue_depth.labels("sync").set(self._sync.qsize())
        self.metrics.queue_depth.labels("jobs").set(self.queued_jobs())

    def _run_sync(self, request: SyncRequest) -> None:
        try:
            for outcome in self._engine.run(request.spec, request.indices,
                                            stop_when=lambda: request.cancelled or self.draining):
                self._count(outcome, "sync")
                request.deliver(outcome)
        finally:
            request.deliver(None)

    def _run_job_chunk(self, job_id: str, guaranteed: int = 0) -> None:
        """Up to job_chunk more indices of the job; waiting sync requests stop it early,
        but only after `guaranteed` outcomes (a job's turn after a burst of sync requests)."""
        with self._lock:
            run = self._runs[job_id]
        job = self.store.get_job(job_id=job_id)
        if job is None:  # deleted meanwhile
            return self._finish(job_id)
        if run.cancel or job.state == "cancelling":
            self.store.set_job_state(job_id=job_id, state="cancelled", now=time.time())
            return self._finish(job_id)
        if job.state == "queued":
            self.store.set_job_state(job_id=job_id, state="running", now=time.time())
        done = self.store.stored_positions(job_id=job_id)
        stop = min(job.total, done + self.settings.job_chunk)
        start = run.spec.start_index
        produced = 0

        def stop_when() -> bool:
            return run.cancel or self.draining or (produced >= guaranteed and not self._sync.empty())

        try:
            for outcome in self._engine.run(run.spec, range(start + done, start + stop), stop_when=stop_when):
                produced += 1
                self._count(outcome, "job")
                self.store.add_result(job_id=job_id, position=outcome.index - start, index=outcome.index,
                                      sample_json=outcome.json, error=None if outcome.json else outcome.error)
        except EngineError as exc:
            return self._fail(job_id, str(exc))
        if self.store.stored_positions(job_id=job_id) >= job.total:
            self.store.set_job_state(job_id=job_id, state="succeeded", now=time.time())
            self._finish(job_id)

    def _fail(self, job_id: str, error: str) -> None:
        self.store.set_job_state(job_id=job_id, state="failed", now=time.time(), error=error)
        self._finish(job_id)

    def _finish(self, job_id: str) -> None:
        with self._lock:
            self._runs.pop(job_id, None)

    def _count(self, outcome: Outcome, via: str) -> None:
        if outcome.json is None:
            self.metrics.failed.inc()
        else:
            self.metrics.samples.labels(via).inc()
