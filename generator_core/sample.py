"""Sample: one generated program and what is known about it (one JSONL line)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel


class OutputStats(BaseModel):
    shape: list[int]
    dtype: str
    mean: float
    std: float
    min: float
    max: float


class Validation(BaseModel):
    """What executing the program showed. No timings: a sample is the same bytes in any
    process (timings go to the engine's progress and metrics instead)."""

    device: str
    passed: bool
    outputs: list[OutputStats]


class Sample(BaseModel):
    pytorch: str
    difficulty: int
    id: str
    level: int
    index: int
    seed: int
    ops: list[str]
    format: str
    dtype: str
    topology: str
    flops: int
    flops_by_op: list[int]
    min_flops: int
    max_flops: int
    flops_window_relaxed: bool
    input_shapes: list[list[int]]
    output_shapes: list[list[int]]
    bytes: int
    attempts: int
    rejected: list[str] = []  # why earlier attempts of this index were redone
    graph: dict[str, Any]
    validation: Validation | None = None
