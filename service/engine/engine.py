"""The engine: solving in a pool of spawned processes, validation in one long-lived process
per device, results handed back in index order.

One sample goes: solve attempt k (a solver worker) -> validate it (the device's worker)
-> rejected: attempt k+1 -> ... -> a Sample, as `generator_core.generate` does in one
process. Every step is a pure function of (spec, index, attempt), so whatever a worker's
fate, a redone step gives the same bytes: a worker that dies (segfault, kill -9, OOM
killer, a poisoned CUDA context) is replaced and only its in-flight requests are sent
again, and a request that keeps killing workers is given up and reported.
"""
from __future__ import annotations

import collections
import heapq
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterable, Iterator

from generator_core.sample import Sample
from generator_core.spec import GenerationSpec
from service.engine.backend import Backend, EngineWorker
from service.engine.devices import DeviceSlot, default_flops_window
from service.engine.messages import Answer, Done, Fault, Rejected, Solved, SolveRequest, ValidateRequest
from service.engine.pool import LocalBackend, Sent
from service.engine.workers import SOLVER_ENV, WORKER_ENV, solver_main, validation_main
from service.logs import log_event

if TYPE_CHECKING:
    from generator_core.generate import Candidate

MAX_CRASHES = 3  # a request that kills this many workers is given up
SOLVE_TIMEOUT_S = 180.0  # CP-SAT stops itself far sooner; this catches a hung process
VALIDATE_TIMEOUT_S = 900.0
# Requests in flight per worker: one running and one waiting, so a worker never idles while
# the parent turns its answer around (measured: +15% samples/s at level 2, small window).
SOLVER_DEPTH = 4
PARENT_NAP_S = 0.002
WINDOW_PER_WORKER = 256
VALIDATION_DEPTH = 2
BACKENDS = ("local", "ray", "auto")
log = logging.getLogger("tcgen.engine")


@dataclass
class Outcome:
    """One index's result: the sample as its JSON line (serialised once, by the worker that
    finished it), or why the index was given up."""

    index: int
    json: str | None
    relaxed: bool = False  # flops_window_relaxed, without parsing the JSON
    error: str | None = None

    @property
    def sample(self) -> Sample | None:
        return None if self.json is None else Sample.model_validate_json(self.json)


@dataclass
class Progress:
    done: int = 0
    failed: int = 0
    rejected: int = 0  # attempts redone (no solution, or validation rejected them)
    restarts: int = 0
    redone: int = 0  # requests sent again because their worker, task or node was lost
    validated: collections.Counter = field(default_factory=collections.Counter)  # per device
    started: float = field(default_factory=time.monotonic)


@dataclass
class Observer:
    """Hooks the service's metrics plug into; the default observes nothing. Called from the
    thread that runs the engine."""

    def stage_timed(self, stage: str, seconds: float) -> None:
        """One solve or validation step of `seconds` (stage: solve or validate)."""

    def attempt_rejected(self, reason: str) -> None:
        """An attempt was redone: no solution, or validation rejected it (`reason` says why)."""

    def worker_restarted(self, stage: str) -> None:
        """A solver or validation worker died and was replaced."""

    def answered(self, kind: str, index: int, timings: dict[str, float]) -> None:
        """A worker's answer (done, rejected, solved, fault) and its timings: solve,
        validate, and validation's parts (validate.inputs, .program, .check, .baseline)."""


@dataclass
class _Index:
    attempt: int = 0
    rejected: list[str] = field(default_factory=list)
    crashes: int = 0
    device_faults: int = 0  # of the current attempt
    candidate: Candidate | None = None


def make_backend(backend: str, ray_address: str | None = None) -> Backend:
    """The backend by name: "local" (processes on this machine), "ray" (a Ray cluster: the
    one at `ray_address` or RAY_ADDRESS, else a new one on this machine) or "auto" (Ray if
    a cluster is reachable, else local). Ray is imported only here, only when asked for."""
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected local, ray or auto, got {backend!r}")
    if backend == "local":
        return LocalBackend()
    try:
        from service.engine.ray_backend import RayBackend, cluster_reachable
    except ImportError as err:
        if backend == "auto":
            return LocalBackend()
        raise ValueError(f"backend: ray needs Ray installed (pip install 'tcgen[ray]'): {err}") from None
    if backend == "auto" and not cluster_reachable(ray_address):
        return LocalBackend()
    return RayBackend(ray_address, join=backend == "auto")


def default_program_bytes(device: str, backend: str = "local", ray_address: str | None = None) -> int:
    """The default max_total_bytes: what every validating device of the backend holds."""
    return device_defaults(device, backend, ray_address)["max_total_bytes"]


def device_defaults(device: str, backend: str = "local", ray_address: str | None = None) -> dict[str, int]:
    """The spec fields a request leaves unset that depend on where it is validated:
    max_total_bytes (what every validating device holds) and the FLOPs window
    (min_flops, max_flops: small on a CPU, see devices.CPU_FLOPS_WINDOW)."""
    chosen = make_backend(backend, ray_address)
    slots = chosen.device_slots(device)
    min_flops, max_flops = default_flops_window(slots)
    return {"max_total_bytes": chosen.default_max_total_bytes(slots), "min_flops": min_flops, "max_flops": max_flops}


class Engine:
    def __init__(self, solver_workers: int | None = None, device: str = "auto", max_in_flight: int | None = None,
                 cpu_validation: str = "inline", observer: Observer | None = None, backend: str = "local",
                 ray_address: str | None = None):
        if solver_workers is not None and solver_workers < 1:
            raise ValueError(f"num_workers: must be at least 1, got {solver_workers}")
        if cpu_validation not in ("inline", "worker"):
            raise ValueError(f"cpu_validation: expected inline or worker, got {cpu_validation!r}")
        self.backend: Backend = make_backend(backend, ray_address)
        # The devices are the backend's: this machine's GPUs, or a Ray cluster's.
        self.slots: list[DeviceSlot] = self.backend.device_slots(device)
        # Without a GPU, validating is CPU work like solving: by default ("inline") each
        # solver worker validates its own samples (measured at level 2, small window, 2
        # cores: 1 -> 2 workers gave 1.9x with validation in the workers, 1.4-1.8x with a
        # separate CPU validation process, whose IPC and scheduling cost as much as the
        # validation it took over). "worker" gives the CPU one dedicated validation process,
        # exactly as each GPU gets one (the same code path, testable without a GPU).
        inline = self.slots[0].label == "cpu" and cpu_validation == "inline"
        validators = 0 if inline else len(self.slots)
        self.solver_workers = solver_workers or self.backend.solver_slots(validators)
        # Indices in flight: results leave in index order, so one slow sample holds back the
        # finished ones behind it; a deep window keeps every worker busy meanwhile (each
        # waiting result is one JSON line in memory).
        self.window = max_in_flight or WINDOW_PER_WORKER * (self.solver_workers + validators)
        self.progress = Progress()
        self.observer = observer or Observer()
        self._stop = False
        self._solvers = [self.backend.make_worker(f"tcgen-solver-{i}", solver_main, "cpu" if inline else None,
                                                  SOLVER_ENV, SOLVER_DEPTH, "solver")
                         for i in range(self.solver_workers)]
        self._validators = [] if inline else [
            self.backend.make_worker(f"tcgen-validate-{s.label}", validation_main, s.label, {**WORKER_ENV, **s.env},
                                     VALIDATION_DEPTH, "validation")
            for s in self.slots]

    # -- lifecycle ----------------------------------------------------------------------
    def start(self, validation: bool = True) -> None:
        """Start the solver workers, and the validation workers unless told they are not
        needed yet (a run without validation does not pay for importing torch on them)."""
        if not any(w.started for w in self._solvers):
            min_flops, max_flops = default_flops_window(self.slots)
            log_event(log, logging.INFO, "engine.started", f"engine starting on {type(self.backend).__name__}",
                      backend=type(self.backend).__name__, solver_workers=self.solver_workers,
                      devices=[s.label for s in self.slots], validation_workers=len(self._validators),
                      default_min_flops=min_flops, default_max_flops=max_flops)
        for w in self._solvers + (self._validators if validation else []):
            if not w.started:
                self.backend.start(w)

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Block until every started worker has finished importing and said so."""
        self.backend.wait_ready([w for w in self._solvers + self._validators if w.started], timeout)

    def close(self) -> None:
        for w in self._solvers + self._validators:
            self.backend.stop(w)
        self.backend.close()

    def __enter__(self) -> Engine:
        self.start(validation=False)
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def request_stop(self) -> None:
        """Stop handing out work; `run` returns after the outcomes already in order."""
        self._stop = True

    def worker_pids(self) -> dict[str, list[int]]:
        return {"solver": [p for w in self._solvers if (p := self.backend.pid(w))],
                "validation": [p for w in self._validators if (p := self.backend.pid(w))]}

    # -- running ------------------------------------------------------------------------
    def run(self, spec: GenerationSpec, indices: Iterable[int],
            stop_when: Callable[[], bool] | None = None) -> Iterator[Outcome]:
        """Outcomes of `indices`, in their order, with at most `window` indices in flight.
        Stops early (after the outcomes already in order) on `request_stop()` or once
        `stop_when()` is true (a cancelled job, a draining service)."""
        self.start(validation=spec.validate_samples)
        run = _Run(self, spec, self._solvers, self._validators)
        try:
            yield from self._run(run, indices, stop_when)
        finally:  # a run that stops early cancels what it left in flight (on Ray: its tasks)
            for w in self._solvers + self._validators:
                self.backend.abandon(w, run.id)

    def _run(self, run: _Run, indices: Iterable[int], stop_when: Callable[[], bool] | None) -> Iterator[Outcome]:
        order = iter(indices)
        admitted: deque[int] = deque()
        exhausted = False
        while True:
            stopping = self._stop or (stop_when is not None and stop_when())
            while not exhausted and len(run.states) < self.window and not stopping:
                index = next(order, None)
                if index is None:
                    exhausted = True
                    break
                run.states[index] = _Index()
                run.solve_queue.push(index)
                admitted.append(index)
            while admitted and admitted[0] in run.done:
                index = admitted.popleft()
                del run.states[index]
                outcome = run.done.pop(index)
                self.progress.done += 1
                self.progress.failed += outcome.json is None
                yield outcome
            if stopping or (exhausted and not admitted):
                return
            run.dispatch()
            if all(len(w.in_flight) >= 2 for w in self._solvers):
                # Every solver has work queued behind its running request: nap so the next
                # wake-up collects several answers (the parent's wake-ups cost CPU the
                # workers need: measured 5% more samples/s on 2 cores).
                time.sleep(PARENT_NAP_S)
            run.wait_and_handle(timeout=0.5)


_RUN_IDS = itertools.count()


class IndexQueue:
    """Indices waiting for a worker, lowest first. Outcomes are yielded in index order, so
    the oldest index holds back every later one: a rejected attempt's retry (a low index)
    goes ahead of first attempts of later indices instead of behind them (FIFO let one
    retried index hold a level-1 run's output back until the run's end)."""

    def __init__(self):
        self._heap: list[int] = []

    def push(self, index: int) -> None:
        heapq.heappush(self._heap, index)

    def pop(self) -> int:
        return heapq.heappop(self._heap)

    def __bool__(self) -> bool:
        return bool(self._heap)


class _Run:
    """The state of one `Engine.run`: queues, per-index attempts, finished outcomes."""

    def __init__(self, engine: Engine, spec: GenerationSpec, solvers: list[EngineWorker],
                 validators: list[EngineWorker]):
        self.engine, self.spec = engine, spec
        self.solvers, self.validators = solvers, validators  # the engine's workers, by stage
        self.spec_json = spec.model_dump_json(by_alias=True)
        self.states: dict[int, _Index] = {}
        self.solve_queue = IndexQueue()
        self.validate_queue = IndexQueue()
        self.done: dict[int, Outcome] = {}
        self.id = next(_RUN_IDS)

    def dispatch(self) -> None:
        for w in self.solvers:
            while w.free and self.solve_queue:
                index = self.solve_queue.pop()
                state = self.states[index]
                w.send(self.id, index, SolveRequest(self.spec_json, index, state.attempt, state.rejected))
        while self.validate_queue:
            w = max(self.validators, key=lambda v: v.free)
            if not w.free:
                break
            index = self.validate_queue.pop()
            state = self.states[index]
            w.send(self.id, index, ValidateRequest(index, state.candidate, state.rejected))

    def wait_and_handle(self, timeout: float) -> None:
        answers, lost, dead = self.engine.backend.collect(timeout)
        for w, sent, message in answers:
            self.handle(w, sent, message)
        for w, sent, why, blame in lost:  # a request lost alone (a Ray task whose node or worker died)
            self.requeue(w, [sent], blame=blame, why=why)
        for w in dead:
            self.replace(w)
        now = time.monotonic()
        for workers, limit in ((self.solvers, SOLVE_TIMEOUT_S), (self.validators, VALIDATE_TIMEOUT_S)):
            for w in workers:
                self.engine.backend.kill_hung(w, now, limit)

    def handle(self, w, sent: Sent, message: Answer) -> None:
        index, timings = message.index, message.timings
        for stage in ("solve", "validate"):
            if stage in timings:
                self.engine.observer.stage_timed(stage, timings[stage])
        self.engine.observer.answered(message.kind, index, timings)
        if isinstance(message, Fault) and message.sticky:  # whichever run it served, a poisoned worker must go
            self.replace(w, blame=False)
        state = self.states.get(index)
        if sent.run != self.id or state is None or index in self.done:
            return  # left behind by an earlier run that stopped early
        if isinstance(message, Done):
            self.done[index] = Outcome(index, message.sample_json, relaxed=message.relaxed)
            if message.device:
                self.engine.progress.validated[message.device] += 1
        elif isinstance(message, Rejected):
            if w.stage == "validation" or self.spec.validate_samples and "no solution" not in message.reason:
                self.engine.progress.validated[self._label(w)] += 1
            self.reject(index, message.reason)
        elif isinstance(message, Solved):
            state.candidate = message.candidate
            self.validate_queue.push(index)
        elif isinstance(message, Fault):
            self.device_fault(w, index, message.reason, sticky=message.sticky)

    def device_fault(self, w, index: int, reason: str, sticky: bool) -> None:
        """The device failed on this attempt (out of memory after the worker emptied its
        caches and retried, or a sticky CUDA error). First time: a fresh worker (a new
        context, an empty allocator) retries it, so a passing fault leaves no trace in the
        output. Again on the fresh worker: the attempt does not fit this device and is
        rejected as such. (A poisoned worker was replaced as soon as it answered; one out of
        memory goes on unless it is replaced here for the retry.)"""
        state = self.states[index]
        retry = state.device_faults == 0
        if retry:
            state.device_faults = 1
            (self.validate_queue if w.stage == "validation" else self.solve_queue).push(index)
        else:
            self.reject(index, f"attempt {state.attempt}: {reason}")
        if retry and not sticky:  # (a sticky fault's worker is replaced already)
            self.replace(w, blame=False)  # its other requests did nothing wrong

    def _label(self, w) -> str:
        return w.device if w.stage == "validation" else "cpu"

    def reject(self, index: int, why: str) -> None:
        state = self.states[index]
        state.rejected.append(why)
        state.attempt += 1
        state.device_faults = 0
        self.engine.progress.rejected += 1
        self.engine.observer.attempt_rejected(why)
        # Imported here: the solver's module imports ortools (~1 s of a CLI's or a server's
        # start), which the engine's own process needs for nothing else.
        from generator_core.generate import MAX_ATTEMPTS, give_up

        if state.attempt >= MAX_ATTEMPTS:
            self.give_up(index, str(give_up(self.spec, index, state.rejected)))
        else:
            self.solve_queue.push(index)

    def give_up(self, index: int, error: str) -> None:
        self.done[index] = Outcome(index, None, error=error)
        log_event(log, logging.WARNING, "index.given_up", error, index=index, seed=self.spec.seed,
                  spec_level=self.spec.level)

    def replace(self, w, blame: bool = True) -> None:
        """A worker died (or must be replaced): start another, and send its requests again."""
        why = self.engine.backend.exit_status(w)
        lost = self.engine.backend.restart(w)
        self.engine.progress.restarts += 1
        log_event(log, logging.WARNING, "worker.restarted", f"{w.stage} worker replaced ({why})", stage=w.stage,
                  worker=w.name, why=why, lost_requests=len(lost))
        self.engine.observer.worker_restarted(w.stage)
        # A worker runs its requests one at a time, in the order sent: only the oldest was
        # running when it died; those queued behind it never ran and take no blame (else a
        # neighbour of a poisonous index, sent with it again and again, is given up too).
        self.requeue(w, lost[:1], blame, why)
        self.requeue(w, lost[1:], False, why)

    def requeue(self, w, lost: list[Sent], blame: bool, why: str) -> None:
        """Send lost requests again; with `blame`, each counts a crash, and one that reached
        MAX_CRASHES is given up."""
        for sent in lost:
            index, state = sent.index, self.states.get(sent.index)
            if sent.run != self.id or state is None or index in self.done:
                continue
            state.crashes += blame
            if state.crashes >= MAX_CRASHES:
                self.give_up(index, f"index {index}: attempt {state.attempt} killed a {w.stage} worker "
                                    f"{state.crashes} times ({why}); given up")
            else:
                self.engine.progress.redone += 1
                (self.solve_queue if w.stage == "solver" else self.validate_queue).push(index)
