"""Sample: one generated program and what is known about it (one JSONL line, one record)."""
from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, field_serializer, field_validator

# Fields a record holds as JSON text (a string column): free-form (graph params, precision
# flags vary by operator and device) or null when absent (validation off, no baselines), so
# no single Arrow type, or none a reader could infer from the first rows, fits them as
# objects. Every record then has the same columns with the same types (records.py).
JSON_TEXT_FIELDS = ("rejected", "graph", "validation", "grading", "baseline")


def json_text(value: Any) -> str:
    """Canonical JSON text (sorted keys, no spaces): one value, one string of bytes."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


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


class Grading(BaseModel):
    """What a grader may assume: the contract a sample was proved against before it was
    returned (generator_core/grading.py has the rules and their checks)."""

    atol: float  # = rtol: what a correct candidate is held to (KernelBench's rule)
    rtol: float
    reference_error: float  # the reference was within this share of (atol, rtol) of float64 (half types: rounded to the dtype)
    input_seeds: list[int]  # torch.manual_seed(s), then get_inputs() on the device
    exact_outputs: list[int]  # positions of int64 (index) outputs: compared with torch.equal
    loose_tolerance: float  # zeros, a mean constant, any input and any removed node fail at it
    tie_margin: float  # index outputs: best beats second best by this share of its magnitude
    precision: dict[str, Any]  # backend flags in effect when the reference was checked


class Baseline(BaseModel):
    """Timings of the program on the device that validated it (spec `baselines`): what a
    generated kernel is compared against. Machine-dependent, unlike the rest of a sample."""

    device: str  # the device's name, e.g. "NVIDIA H100 80GB HBM3" or the CPU's
    torch: str
    runs: int
    eager_ms: float  # median of `runs` timed runs after warm-up
    eager_min_ms: float
    compiled: bool | None = None  # None: not asked (baseline_compile false)
    compile_s: float | None = None  # first call of torch.compile's program, compilation included
    compiled_ms: float | None = None  # median of `runs`, when it compiled
    compile_error: str | None = None


class Sample(BaseModel):
    """Typed in Python (`sample.grading.atol`, `sample.graph["nodes"]`); as JSON (a JSONL
    line, an API answer, a Parquet row) the JSON_TEXT_FIELDS are strings of JSON text,
    always present ("null" when absent). Either form parses back."""

    model_config = ConfigDict(json_schema_serialization_defaults_required=True)

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
    grading: Grading | None = None  # the contract a grader may assume (None: validation off)
    baseline: Baseline | None = None

    @field_validator(*JSON_TEXT_FIELDS, mode="before")
    @classmethod
    def _from_json_text(cls, value: Any) -> Any:
        return json.loads(value) if isinstance(value, (str, bytes)) else value

    @field_serializer(*JSON_TEXT_FIELDS, mode="wrap", when_used="json")
    def _as_json_text(self, value: Any, handler) -> str:
        return json_text(handler(value))
