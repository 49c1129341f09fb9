"""What the engine and its workers send each other: one frozen dataclass per kind of
message. They travel through multiprocessing pipes (local) and Ray's object store, so they
hold only primitives and the library's own picklable objects (a Candidate), and the classes
live in a module both ends import (nothing heavy: a Candidate is only a type here).

A frozen answer's `timings` dict is still filled in after the answer is built: the steps
that time it (solve, validate and its parts) wrap the code that makes it."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from generator_core.generate import Candidate


@dataclass(frozen=True)
class Ready:
    """A worker process finished importing and takes requests."""

    pid: int


@dataclass(frozen=True)
class SolveRequest:
    """Solve attempt `attempt` of `index` of the spec (its JSON: a worker caches the parsed spec)."""

    spec_json: str
    index: int
    attempt: int
    rejected: list[str]  # why the earlier attempts were rejected (a finished sample records them)


@dataclass(frozen=True)
class ValidateRequest:
    """Validate a solved attempt of `index` on the worker's device."""

    index: int
    candidate: Candidate
    rejected: list[str]


@dataclass(frozen=True)
class Done:
    """A finished sample, serialised by the worker so the parent only routes and writes bytes."""

    kind: ClassVar[str] = "done"
    index: int
    attempt: int
    sample_json: str
    relaxed: bool  # the sample's flops_window_relaxed, without parsing its JSON
    device: str | None  # the device that validated it; None when not validated
    timings: dict[str, float] = field(default_factory=dict)  # seconds, read only by metrics and benches


@dataclass(frozen=True)
class Rejected:
    """The attempt failed (no solution, or validation rejected it) and is redone."""

    kind: ClassVar[str] = "rejected"
    index: int
    attempt: int
    reason: str
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Solved:
    """A solved attempt, to be sent to a validation worker."""

    kind: ClassVar[str] = "solved"
    index: int
    attempt: int
    candidate: Candidate
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class Fault:
    """The device failed on the attempt (out of memory, or a sticky error that poisons the worker)."""

    kind: ClassVar[str] = "fault"
    index: int
    attempt: int
    reason: str
    sticky: bool
    timings: dict[str, float] = field(default_factory=dict)


Request = SolveRequest | ValidateRequest
Answer = Done | Rejected | Solved | Fault
