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
class _Answer:
    """What a worker answers about attempt `attempt` of `index`: one of the kinds below."""

    kind: ClassVar[str]  # what Observer.answered is told
    index: int
    attempt: int
    # Seconds by step (solve, validate and its parts), read only by metrics and benches;
    # keyword-only, so it comes last whatever fields a kind adds.
    timings: dict[str, float] = field(default_factory=dict, kw_only=True)


@dataclass(frozen=True)
class Done(_Answer):
    """A finished sample, serialised by the worker so the parent only routes and writes bytes."""

    kind: ClassVar[str] = "done"
    sample_json: str
    relaxed: bool  # the sample's flops_window_relaxed, without parsing its JSON
    device: str | None  # the device that validated it; None when not validated


@dataclass(frozen=True)
class Rejected(_Answer):
    """The attempt failed (no solution, or validation rejected it) and is redone."""

    kind: ClassVar[str] = "rejected"
    reason: str


@dataclass(frozen=True)
class Solved(_Answer):
    """A solved attempt, to be sent to a validation worker."""

    kind: ClassVar[str] = "solved"
    candidate: Candidate


@dataclass(frozen=True)
class Fault(_Answer):
    """The device failed on the attempt (out of memory, or a sticky error that poisons the worker)."""

    kind: ClassVar[str] = "fault"
    reason: str
    sticky: bool


Request = SolveRequest | ValidateRequest
Answer = Done | Rejected | Solved | Fault
