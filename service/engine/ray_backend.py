"""The Ray backend: the engine's workers on a Ray cluster, with the local backend's contract.

- Solving: one Ray task per request (num_cpus=1, no Ray retries), running the same handler
  as a local solver process (`workers.solver`); each Ray worker process keeps one handler,
  so torch and ortools are imported once per process, not per task.
- Validation: one actor per GPU of the cluster (num_gpus=1), or one for the CPU with
  `cpu_validation="worker"`, running the same validator as a local validation process.
  Ray restarts an actor that dies (max_restarts=-1); the calls it had are redone.
- In-flight work is bounded as locally: each pseudo-worker holds at most `capacity`
  requests, and answers are collected with `ray.wait`.
- A request lost to a dead node, worker or actor is sent again and counts a crash for its
  index, exactly as a local worker's death does; a run that stops early (a cancelled job)
  cancels the tasks it left in flight.

The engine's scheduling, attempts, device-fault ladder and ordering are the same code for
both backends, so a sample is the same bytes whichever ran it.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import ray
from ray.exceptions import GetTimeoutError, RayError

from service.engine.devices import MAX_PROGRAM_BYTES, DeviceSlot, default_max_total_bytes, device_slots
from service.engine.faults import CRASH_ENV, FAULT_ENV
from service.engine.messages import Answer, Request, SolveRequest, ValidateRequest
from service.engine.pool import EngineError, Sent
from service.engine.workers import _validator, solver

SOLVE_BATCH = 8  # solver requests per Ray task
MAX_READY_FAILURES = 20  # readiness calls an actor may fail in a row before it is an error
_STARTED_HERE = False  # whether this process started the Ray instance it uses (then it stops it)


def cluster_reachable(address: str | None) -> bool:
    """Is there a Ray cluster to join: an address, RAY_ADDRESS, this process already in
    one, or a cluster started on this machine with `ray start`."""
    return bool(address or os.environ.get("RAY_ADDRESS") or ray.is_initialized()
                or os.path.exists("/tmp/ray/ray_current_cluster"))


def _cancel(ref) -> None:
    try:
        ray.cancel(ref)
    except (RayError, ValueError, TypeError):  # finished meanwhile, or not cancellable
        pass


def _test_hooks() -> dict[str, str]:
    """The tests' fault hooks (faults.CRASH_ENV, FAULT_ENV) reach Ray's worker processes
    only through their runtime env; unset in normal runs."""
    return {k: os.environ[k] for k in (CRASH_ENV, FAULT_ENV) if k in os.environ}


_SOLVERS: dict[str | None, Any] = {}  # in a Ray worker process: one solver handler per validate_on


def _uninterruptible() -> None:
    """Ray cancels a running task by interrupting it (KeyboardInterrupt), which can land
    inside an import of torch or a CP-SAT call and leave the worker process broken for
    every later task (measured: RuntimeErrors in the next run after a cancelled one). As a
    local worker does, ignore SIGINT: a queued task is still cancelled, a running one
    finishes and its answer is dropped."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


@ray.remote(num_cpus=1, max_retries=0)
def solve_task(requests: list[SolveRequest], validate_on: str | None) -> list[Answer]:
    """The answers to a batch of solver requests, in order."""
    handle = _SOLVERS.get(validate_on)
    if handle is None:
        _uninterruptible()
        handle = _SOLVERS[validate_on] = solver(validate_on)
    return [handle(request) for request in requests]


@ray.remote(max_restarts=-1, max_task_retries=0)
class ValidationActor:
    """One device's validation worker. A sticky CUDA error answers a fault, and the engine
    then has Ray restart the actor (a fresh process, a fresh CUDA context)."""

    def __init__(self, label: str):
        _uninterruptible()
        self._validate = _validator(label)

    def ready(self) -> int:
        return os.getpid()

    def validate(self, request: ValidateRequest) -> Answer:
        return self._validate(request)


@ray.remote(num_gpus=1)
def _gpu_memory() -> int:
    import torch

    return torch.cuda.get_device_properties(0).total_memory


@dataclass(eq=False)
class RayWorker:
    """A pseudo-worker: a slot of solver tasks, or one validation actor. Solver requests go
    out in batches of up to SOLVE_BATCH per task: a Ray task costs the driver and the
    raylet about as much CPU as solving a small-window sample, so one task per request
    made 70-76% of the local backend's samples/s (bench.pipeline --backend ray, 2 cores)."""

    name: str
    stage: str  # "solver" or "validation"
    # A validation actor's device label ("cpu", "cuda:<i>"); a solver slot's, the device its
    # tasks validate their own samples on ("cpu": cpu_validation inline) or None.
    device: str | None
    env: dict[str, str]
    capacity: int
    started: bool = False
    ready: bool = False
    task: Any = None  # solver: the task with its options
    actor: Any = None  # validation: the actor handle
    ready_ref: Any = None
    ready_failures: int = 0
    actor_pid: int | None = None
    pending: list[Sent] = field(default_factory=list)  # solver requests not yet in a task
    batches: dict[Any, list[Sent]] = field(default_factory=dict)  # ObjectRef -> its requests
    hung: set = field(default_factory=set)  # refs already cancelled or killed for taking too long
    # Indices whose batch was lost (shared by the solver slots): each goes out alone next
    # time, so that a crash is blamed on the request that caused it, not on its batch-mates.
    alone: set[int] = field(default_factory=set)

    @property
    def in_flight(self) -> list[Sent]:
        return self.pending + [sent for batch in self.batches.values() for sent in batch]

    @property
    def free(self) -> int:
        return self.capacity - len(self.pending) - sum(map(len, self.batches.values())) if self.ready else 0

    def send(self, run: int, index: int, request: Request) -> None:
        sent = Sent(run, index, request, time.monotonic())
        if self.stage == "solver" and index in self.alone:
            self.flush()
            self.pending.append(sent)
            self.flush()
        elif self.stage == "solver":
            self.pending.append(sent)
            if len(self.pending) >= SOLVE_BATCH:
                self.flush()
        else:
            self.batches[self.actor.validate.remote(request)] = [sent]

    def flush(self) -> None:
        if self.pending:
            self.batches[self.task.remote([s.request for s in self.pending], self.device)] = self.pending
            self.pending = []


class RayBackend:
    name = "ray"

    def __init__(self, address: str | None = None, join: bool = False):
        """Join the cluster at `address` (else RAY_ADDRESS; with `join`, whichever cluster
        is reachable), or start one on this machine. A process already in a Ray cluster
        (a trainer's driver) keeps it."""
        global _STARTED_HERE
        self.workers: list[RayWorker] = []
        self.alone: set[int] = set()
        if ray.is_initialized():
            return
        address = address or os.environ.get("RAY_ADDRESS") or ("auto" if join else None)
        # ray.init makes SIGTERM exit the driver at once (sys.exit); the CLI and the service
        # handle SIGTERM themselves (finish whole lines, drain requests), so keep theirs.
        on_sigterm = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(address="local", include_dashboard=False, log_to_driver=False)  # a new one, not a neighbour
            _STARTED_HERE = True
        if on_sigterm is not None:
            signal.signal(signal.SIGTERM, on_sigterm)

    # -- what the cluster offers ------------------------------------------------------
    def device_slots(self, device: str) -> list[DeviceSlot]:
        """One validation actor per GPU of the cluster, or the CPU."""
        gpus = 0 if device == "cpu" else int(ray.cluster_resources().get("GPU", 0))
        return device_slots(device, [str(i) for i in range(gpus)], where="the Ray cluster has no GPU")

    def solver_slots(self, validators: int) -> int:
        """The cluster's CPUs, less one per validation actor."""
        return max(1, int(ray.cluster_resources().get("CPU", 1)) - validators)

    def default_max_total_bytes(self, slots: list[DeviceSlot]) -> int:
        """As devices.default_max_total_bytes, over the cluster's GPUs (80% of the smallest);
        without GPUs, this machine's rule, so that a CPU cluster makes the local bytes."""
        if slots[0].label == "cpu":
            return default_max_total_bytes(slots)
        smallest = min(ray.get([_gpu_memory.remote() for _ in slots]))
        return min(MAX_PROGRAM_BYTES, int(smallest * 0.8))

    # -- workers ------------------------------------------------------------------------
    def make_worker(self, name: str, target, device: str | None, env: dict[str, str], capacity: int,
                    stage: str) -> RayWorker:
        # Two batches in flight per solver slot: one solving, one queued behind it.
        w = RayWorker(name, stage, device, env, 2 * SOLVE_BATCH if stage == "solver" else capacity, alone=self.alone)
        self.workers.append(w)
        return w

    def start(self, w: RayWorker) -> None:
        runtime_env = {"env_vars": {**w.env, **_test_hooks()}}
        if w.stage == "solver":
            w.task = solve_task.options(runtime_env=runtime_env)
            w.ready = True
        else:
            gpu = w.device.startswith("cuda")
            w.actor = ValidationActor.options(num_cpus=1, num_gpus=1 if gpu else 0,
                                              runtime_env=runtime_env).remote(w.device)
            w.ready_ref = w.actor.ready.remote()
        w.started = True

    def wait_ready(self, workers: list[RayWorker], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for w in workers:
            while not w.ready:
                try:
                    ray.wait([w.ready_ref], timeout=max(0.0, deadline - time.monotonic()))
                    self._check_ready(w, w.ready_ref)
                except GetTimeoutError:
                    pass
                if not w.ready and time.monotonic() > deadline:
                    raise TimeoutError("engine workers did not become ready in time")

    def _check_ready(self, w: RayWorker, ref) -> None:
        """The actor answered its readiness call: ready, or (a call that reached the dying
        incarnation of a restarting actor) ask again; an actor that keeps failing to come up
        (its constructor fails) is an error."""
        try:
            w.actor_pid = ray.get(ref, timeout=0)
        except GetTimeoutError:
            return
        except RayError as exc:
            w.ready_failures += 1
            if w.ready_failures >= MAX_READY_FAILURES:
                raise EngineError(f"{w.name} could not start: {str(exc).splitlines()[0]}") from exc
            w.ready_ref = w.actor.ready.remote()
            return
        w.ready, w.ready_ref, w.ready_failures = True, None, 0

    def _await_restart(self, w: RayWorker) -> None:
        """No calls to an actor between its death and its restart (each would fail and count
        a crash against its sample): wait for it to answer a readiness call first."""
        w.ready = False
        if w.ready_ref is None:
            w.ready_ref = w.actor.ready.remote()

    def collect(self, timeout: float) -> tuple[list, list, list]:
        """(answers as (worker, request, message), requests lost one by one as (worker,
        request, why, blame), dead workers: none, as Ray restarts actors itself). A request
        lost alone in its task is blamed (counts a crash); one lost with batch-mates is not,
        and goes out alone next time."""
        owners: dict[Any, tuple[RayWorker, list[Sent] | None]] = {}
        for w in self.workers:
            w.flush()
            owners.update((ref, (w, batch)) for ref, batch in w.batches.items())
            if w.ready_ref is not None:
                owners[w.ready_ref] = (w, None)
        if not owners:
            time.sleep(min(timeout, 0.01))
            return [], [], []
        refs = list(owners)
        done, _ = ray.wait(refs, num_returns=1, timeout=timeout)
        if done:  # and whatever else is ready by now, in one round
            done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        answers, lost = [], []
        for ref in done:
            w, batch = owners[ref]
            if batch is None:
                self._check_ready(w, ref)
                continue
            del w.batches[ref]
            w.hung.discard(ref)
            try:
                messages = ray.get(ref)
            except RayError as exc:
                alone = len(batch) == 1
                if not alone:
                    self.alone.update(sent.index for sent in batch)
                if w.stage == "validation":
                    self._await_restart(w)
                lost += [(w, sent, f"last error: {type(exc).__name__}", alone) for sent in batch]
                continue
            self.alone.difference_update(sent.index for sent in batch)
            answers += [(w, sent, message) for sent, message in zip(batch, messages if w.stage == "solver" else [messages])]
        return answers, lost, []

    def restart(self, w: RayWorker) -> list[Sent]:
        """A validation actor to replace (a sticky CUDA error, or a retry after an OOM on a
        fresh process): Ray restarts it, and its other calls are sent again. Solver tasks
        hold no state: nothing to restart, nothing lost."""
        if w.stage == "solver":
            return []
        lost = w.in_flight
        w.batches.clear()
        w.hung.clear()
        ray.kill(w.actor, no_restart=False)
        self._await_restart(w)
        return lost

    def exit_status(self, w: RayWorker) -> str:
        return "restarted by the engine"

    def kill_hung(self, w: RayWorker, now: float, limit: float) -> None:
        for ref, batch in list(w.batches.items()):
            if now - batch[0].at > limit and ref not in w.hung:
                w.hung.add(ref)  # its failure comes back as a lost request
                if w.stage == "solver":
                    ray.cancel(ref, force=True)
                else:
                    ray.kill(w.actor, no_restart=False)

    def abandon(self, w: RayWorker, run: int) -> None:
        """A run stopped early (a cancelled job, a draining service): cancel its tasks."""
        w.pending = [sent for sent in w.pending if sent.run != run]
        for ref, batch in list(w.batches.items()):
            if batch[0].run == run:  # a batch holds one run's requests: it is sent within one run's round
                del w.batches[ref]
                _cancel(ref)

    def stop(self, w: RayWorker) -> None:
        for ref in w.batches:
            _cancel(ref)
        w.batches.clear()
        w.pending = []
        if w.actor is not None:
            ray.kill(w.actor, no_restart=True)
            w.actor = None
        w.started = w.ready = False
        w.ready_ref = None

    def pid(self, w: RayWorker) -> int | None:
        return w.actor_pid

    def close(self) -> None:
        """Stop Ray if this process started it; a joined cluster goes on."""
        global _STARTED_HERE
        if _STARTED_HERE and ray.is_initialized():
            ray.shutdown()
            _STARTED_HERE = False
