"""One worker process with its pipe: start, send, detect death, restart."""
from __future__ import annotations

import multiprocessing as mp
import os
import time
from dataclasses import dataclass, field
from typing import Any, Callable

SPAWN = mp.get_context("spawn")
MAX_START_FAILURES = 3  # a worker that dies before it is ready this often is an error


class EngineError(RuntimeError):
    """The engine cannot run (a worker cannot even start)."""


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
    in_flight: dict[int, tuple[Any, float]] = field(default_factory=dict)  # index -> (request, sent at)
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

    def send(self, index: int, request: Any) -> None:
        self.in_flight[index] = (request, time.monotonic())
        self.conn.send(request)

    def oldest(self) -> float | None:
        return min((t for _, t in self.in_flight.values()), default=None)

    def restart(self) -> dict[int, Any]:
        """Replace a dead (or killed) process; returns the requests it had in flight."""
        lost = {i: req for i, (req, _) in self.in_flight.items()}
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
