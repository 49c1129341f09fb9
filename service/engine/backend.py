"""The contract between the engine and where its workers run. Two backends keep it:
pool.LocalBackend (spawned processes on this machine) and ray_backend.RayBackend (tasks and
actors on a Ray cluster); tests/test_engine_seams.py checks that both do, method by method.

The engine decides everything (what to send, what to redo, what to give up); a backend only
starts, feeds, watches and replaces workers, and reports what came back."""
from __future__ import annotations

from typing import Any, Callable, Protocol, Sequence

from service.engine.devices import DeviceSlot
from service.engine.messages import Answer, Request
from service.engine.pool import Sent

# What one wait brings back: answers as (worker, the request answered, the answer), requests
# lost one by one as (worker, request, why, blame) (a Ray task that failed; a local process
# loses all of its requests at once, so it reports none), and workers found dead.
Answered = tuple[Any, Sent, Answer]
LostOne = tuple[Any, Sent, str, bool]
Collected = tuple[list[Answered], list[LostOne], list[Any]]


class EngineWorker(Protocol):
    """A worker as the engine sees it: a named slot of one stage that takes requests."""

    name: str
    stage: str  # "solver" or "validation"
    # A validation worker's device label ("cpu", "cuda:<i>"); a solver's, the device it
    # validates its own samples on ("cpu": cpu_validation inline) or None (it does not).
    device: str | None

    @property
    def started(self) -> bool: ...

    @property
    def free(self) -> int:
        """Requests it can take now (0 until it is ready)."""

    @property
    def in_flight(self) -> Sequence[Sent]: ...

    def send(self, run: int, index: int, request: Request) -> None: ...


class Backend(Protocol):
    name: str  # "local" or "ray"

    def device_slots(self, device: str) -> list[DeviceSlot]:
        """The validation devices for `device` (cpu, cuda or auto)."""

    def solver_slots(self, validators: int) -> int:
        """How many solver workers fit beside `validators` validation workers."""

    def default_max_total_bytes(self, slots: list[DeviceSlot]) -> int: ...

    def make_worker(self, name: str, target: Callable[..., None], device: str | None, env: dict[str, str],
                    capacity: int, stage: str) -> EngineWorker: ...

    def start(self, w: EngineWorker) -> None: ...

    def wait_ready(self, workers: list[EngineWorker], timeout: float) -> None: ...

    def collect(self, timeout: float) -> Collected: ...

    def restart(self, w: EngineWorker) -> list[Sent]:
        """Replace a dead or hung worker; the requests it had in flight, to send again."""

    def exit_status(self, w: EngineWorker) -> str:
        """Why the worker ended, for messages."""

    def kill_hung(self, w: EngineWorker, now: float, limit: float) -> None: ...

    def abandon(self, w: EngineWorker, run: int) -> None:
        """A run stopped early: drop or cancel what it left with `w`."""

    def stop(self, w: EngineWorker) -> None: ...

    def pid(self, w: EngineWorker) -> int | None: ...

    def close(self) -> None: ...
