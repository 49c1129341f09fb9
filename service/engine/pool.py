"""The local backend: worker processes with their pipes (start, send, detect death,
restart), watched through one selector."""
from __future__ import annotations

import multiprocessing as mp
import os
import selectors
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from service.engine.devices import DeviceSlot, default_max_total_bytes, device_slots
from service.engine.messages import Answer, Ready, Request
from service.engine.workers import PRELOAD, start_worker

# Workers are forked from a server process that has already imported what every worker
# imports (torch, ortools, the generator), once per engine process: a worker, or its
# replacement after a crash, then starts in milliseconds instead of ~3.5 s of imports, and
# the workers share those pages. The server never initialises CUDA (importing torch does
# not), so each child still chooses its GPU with CUDA_VISIBLE_DEVICES; and it is a clean
# process, unlike the engine's, whose threads (uvicorn's, a progress bar's) make plain fork
# unsafe.
WORKERS = mp.get_context("forkserver")
WORKERS.set_forkserver_preload(list(PRELOAD))
MAX_START_FAILURES = 3  # a worker that dies before it is ready this often is an error


class EngineError(RuntimeError):
    """The engine cannot run (a worker cannot even start)."""


@dataclass
class Sent:
    """A request in flight. `run` tells which Engine.run sent it: a run that stopped early
    leaves requests behind, and their answers must not be taken for a later run's (the
    same index of another spec)."""

    run: int
    index: int
    request: Request
    at: float


@dataclass
class Worker:
    name: str
    target: Callable[..., None]  # the process's entry point: target(its end of the pipe, device)
    # A validation worker's device label ("cpu", "cuda:<i>"); a solver's, the device it
    # validates its own samples on ("cpu", cpu_validation inline) or None (it does not).
    device: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    capacity: int = 1  # requests in flight at once (kept small: pipes have finite buffers)
    stage: str = "solver"  # or "validation"
    process: Any = None
    conn: Any = None
    ready: bool = False
    # A worker answers its requests one at a time, in order: the oldest in flight is the one
    # the next answer is for.
    in_flight: deque[Sent] = field(default_factory=deque)
    start_failures: int = 0
    restarts: int = 0

    def start(self) -> None:
        parent_end, child_end = WORKERS.Pipe()
        # The child takes this process's environment as it is now, as a spawned one would
        # (not the fork server's, from when it started), with the worker's own on top.
        env = {**os.environ, **self.env}
        self.process = WORKERS.Process(target=start_worker, args=(self.target, child_end, self.device, env),
                                       name=self.name, daemon=True)
        self.process.start()
        child_end.close()
        self.conn, self.ready = parent_end, False

    @property
    def free(self) -> int:
        return self.capacity - len(self.in_flight) if self.ready else 0

    def send(self, run: int, index: int, request: Request) -> None:
        self.in_flight.append(Sent(run, index, request, time.monotonic()))
        self.conn.send(request)

    def answered(self, index: int) -> Sent:
        """The request an answer about `index` is for."""
        sent = self.in_flight.popleft()
        if sent.index != index:
            raise EngineError(f"{self.name} answered for index {index}, expected {sent.index}")
        return sent

    def oldest(self) -> float | None:
        return self.in_flight[0].at if self.in_flight else None

    @property
    def started(self) -> bool:
        return self.process is not None

    def restart(self) -> list[Sent]:
        """Replace a dead (or killed) process; returns the requests it had in flight."""
        lost = list(self.in_flight)
        if not self.ready:
            self.start_failures += 1
            if self.start_failures >= MAX_START_FAILURES:
                raise EngineError(f"{self.name} died {self.start_failures} times before it was ready "
                                  f"(exit code {self.process.exitcode})")
        self.kill()
        self.in_flight.clear()
        self.restarts += 1
        self.start()
        return lost

    def kill(self) -> None:
        if self.process is not None and self.process.is_alive():
            self.process.kill()
        if self.process is not None:
            self.process.join(timeout=5)
        if self.conn is not None:
            self.conn.close()

    def stop(self) -> None:
        """Ask politely, then make sure."""
        try:
            if self.process is not None and self.process.is_alive():
                self.conn.send(None)
                self.process.join(timeout=2)
        except (OSError, BrokenPipeError):
            pass
        self.kill()


class LocalBackend:
    """Workers as processes on this machine (forked from a preloaded server). One selector
    for the engine's life: building one per wait (what multiprocessing.connection.wait
    does) cost the parent measurable CPU per sample."""

    name = "local"

    def __init__(self):
        self._selector = selectors.DefaultSelector()

    @staticmethod
    def device_slots(device: str) -> list[DeviceSlot]:
        return device_slots(device)

    @staticmethod
    def solver_slots(validators: int) -> int:
        """This machine's CPUs (a GPU's validation worker mostly waits on its device)."""
        return os.cpu_count() or 1

    @staticmethod
    def default_max_total_bytes(slots: list[DeviceSlot]) -> int:
        return default_max_total_bytes(slots)

    def make_worker(self, name: str, target: Callable[..., None], device: str | None, env: dict[str, str],
                    capacity: int, stage: str) -> Worker:
        return Worker(name, target, device=device, env=env, capacity=capacity, stage=stage)

    def start(self, w: Worker) -> None:
        w.start()
        self._watch(w)

    def _watch(self, w: Worker) -> None:
        # Each event names the process it is about: a worker replaced while its events were
        # being handled must not be replaced again for its old process's exit.
        self._selector.register(w.conn, selectors.EVENT_READ, (w, "message", w.process))
        self._selector.register(w.process.sentinel, selectors.EVENT_READ, (w, "exit", w.process))

    def _unwatch(self, w: Worker) -> None:
        for obj in (w.conn, w.process.sentinel):
            try:
                self._selector.unregister(obj)
            except (KeyError, ValueError):
                pass

    def wait_ready(self, workers: list[Worker], timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while not all(w.ready for w in workers):
            if time.monotonic() > deadline:
                raise TimeoutError("engine workers did not become ready in time")
            for w in workers:
                if not w.ready and w.conn.poll(0.05):
                    w.ready = isinstance(w.conn.recv(), Ready)

    def collect(self, timeout: float) -> tuple[list[tuple[Worker, Sent, Answer]], list, list[Worker]]:
        """(answers as (worker, request, message), requests lost alone (none here: a process
        loses all of its requests when it dies), dead workers) after waiting up to `timeout`."""
        events = [key.data for key, _ in self._selector.select(timeout)]
        answers, dead = [], []
        for w, what, _ in events:  # messages first: a worker may answer and then die
            if what != "message":
                continue
            try:
                while w.conn.poll():
                    message = w.conn.recv()
                    if isinstance(message, Ready):
                        w.ready, w.start_failures = True, 0
                    else:
                        answers.append((w, w.answered(message.index), message))
            except (EOFError, OSError):
                dead.append(w)
        dead += [w for w, what, process in events if what == "exit" and process is w.process and w not in dead]
        return answers, [], dead

    def restart(self, w: Worker) -> list[Sent]:
        self._unwatch(w)
        lost = w.restart()
        self._watch(w)
        return lost

    def exit_status(self, w: Worker) -> str:
        return f"last exit code {w.process.exitcode}"

    def kill_hung(self, w: Worker, now: float, limit: float) -> None:
        oldest = w.oldest()
        if oldest is not None and now - oldest > limit and w.process.is_alive():
            w.process.kill()  # its sentinel fires next round and the engine replaces it

    def abandon(self, w: Worker, run: int) -> None:
        """A run stopped early: its requests stay in the pipe (answers are told apart by run)."""

    def stop(self, w: Worker) -> None:
        if w.process is not None:
            self._unwatch(w)
            w.stop()
            w.process = None

    def pid(self, w: Worker) -> int | None:
        return w.process.pid if w.process else None

    def close(self) -> None:
        """Nothing beyond the workers: the engine may start them again."""
