"""One worker process with its pipe: start, send, detect death, restart."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

SPAWN = mp.get_context("spawn")
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
    request: Any
    at: float


@dataclass
class Worker:
    name: str
    target: Callable[..., None]
    args: tuple[Any, ...] = ()
    env: dict[str, str] = field(default_factory=dict)
    capacity: int = 1  # requests in flight at once (kept small: pipes have finite buffers)
    process: Any = None
    conn: Any = None
    ready: bool = False
    # A worker answers its requests one at a time, in order: the oldest in flight is the one
    # the next answer is for.
    in_flight: deque[Sent] = field(default_factory=deque)
    start_failures: int = 0
    restarts: int = 0

    def start(self) -> None:
        parent_end, child_end = SPAWN.Pipe()
        saved = {k: os.environ.get(k) for k in self.env}
        os.environ.update(self.env)  # a spawned child starts with the parent's environment
        try:
            self.process = SPAWN.Process(target=self.target, args=(child_end, *self.args), name=self.name, daemon=True)
            self.process.start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        child_end.close()
        self.conn, self.ready = parent_end, False

    @property
    def free(self) -> int:
        return self.capacity - len(self.in_flight) if self.ready else 0

    def send(self, run: int, index: int, request: Any) -> None:
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
