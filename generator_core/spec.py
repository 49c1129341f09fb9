"""GenerationSpec: the one request model shared by the Python API, the CLI and HTTP."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from generator_core.ops import OPERATORS

LEVEL_OPS = {0: 1, 1: 2, 2: 3, 3: 5, 4: 10}
MAX_FLOPS_LIMIT = 2**40
MAX_OPS = 20  # operators in one program, by num_ops or op_sequence
INDEX_LIMIT = 2**63  # every index (start_index + k) is below it: a signed 64-bit integer anywhere it is stored

Dtype = Literal["float32", "float16", "bfloat16"]
Topology = Literal["dag", "chain"]
Format = Literal["fused_operator", "kernelbench"]


def _check_names(names: list[str] | None, field: str) -> list[str] | None:
    if names is None:
        return None
    unknown = sorted({n for n in names if n not in OPERATORS})
    if unknown:
        raise ValueError(f"{field}: unknown operator(s) {', '.join(unknown)}; see `tcgen ops` for the catalogue")
    return names


class GenerationSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    level: int | None = Field(None, ge=0, le=4, description="0..4 -> 1, 2, 3, 5, 10 operators")
    count: int = Field(1, ge=1, description="how many samples")
    seed: int = Field(0, ge=0, lt=2**63, description="everything random derives from (seed, index)")
    start_index: int = Field(0, ge=0, lt=INDEX_LIMIT, description="sample k uses index start_index + k")
    min_flops: int = Field(2**34, ge=0, le=MAX_FLOPS_LIMIT)
    max_flops: int = Field(2**35, ge=0, le=MAX_FLOPS_LIMIT)
    ops: list[str] | None = Field(None, description="allow-list of operator names")
    exclude_ops: list[str] = Field(default_factory=list, description="deny-list of operator names")
    op_sequence: list[str] | None = Field(None, description="exact operators, one per node")
    num_ops: int | None = Field(None, ge=1, le=MAX_OPS,
                                description="1..20 operators drawn from (seed, index), as levels 2-4 draw theirs; "
                                            "with level, level only names the difficulty")
    dtype: Dtype = "float32"
    topology: Topology = "dag"
    max_tensor_numel: int = Field(2**30, ge=2**10, le=2**30, description="per tensor")
    max_total_bytes: int = Field(16 * 2**30, ge=2**20, le=2**40, description="all tensors of one program")
    # Named `validate` on the wire; pydantic's BaseModel reserves the attribute name.
    validate_samples: bool = Field(True, alias="validate", description="execute every sample before returning it")
    format: Format = "fused_operator"
    # Opt-in per-sample timings on the validating device: what RL reward code compares a
    # generated kernel against. The only machine-dependent part of a sample.
    baselines: bool = Field(False, description="time each validated sample on its device: eager median of "
                                               "10 runs after warm-up (CUDA events on a GPU)")
    baseline_compile: bool = Field(False, description="with baselines: also torch.compile the program, and time "
                                                      "the compiled program when it compiles")

    @field_validator("ops")
    @classmethod
    def _known_ops(cls, v):
        if v is not None and not v:
            raise ValueError("ops: empty allow-list; omit it to allow every operator")
        return _check_names(v, "ops")

    @field_validator("exclude_ops")
    @classmethod
    def _known_excluded(cls, v):
        return _check_names(v, "exclude_ops")

    @field_validator("op_sequence")
    @classmethod
    def _known_sequence(cls, v):
        if v is not None and not 1 <= len(v) <= MAX_OPS:
            raise ValueError(f"op_sequence: needs 1 to {MAX_OPS} operators, got {len(v)}")
        return _check_names(v, "op_sequence")

    @model_validator(mode="after")
    def _satisfiable(self):
        if self.level is None and self.op_sequence is None and self.num_ops is None:
            raise ValueError("level: required unless num_ops or op_sequence is given")
        if self.num_ops is not None and self.op_sequence is not None:
            raise ValueError("num_ops: give num_ops or op_sequence, not both")
        if self.baselines and not self.validate_samples:
            raise ValueError("baselines: timings need validation on (validate: true)")
        if self.baseline_compile and not self.baselines:
            raise ValueError("baseline_compile: needs baselines: true")
        if self.start_index + self.count > INDEX_LIMIT:
            raise ValueError(f"start_index: {self.start_index} + count {self.count} goes past the last index "
                             f"2**63 - 1")
        if self.min_flops > self.max_flops:
            raise ValueError(f"min_flops: {self.min_flops} is greater than max_flops {self.max_flops}")
        if self.op_sequence is None and not self.pool():
            raise ValueError("ops: no operator left after applying ops and exclude_ops")
        floor, what = self._cheapest_program()
        if floor > self.max_flops:
            raise ValueError(f"max_flops: {self.max_flops} is below the {floor} FLOPs that {what} needs at minimum size")
        return self

    # -- derived ------------------------------------------------------------------------
    @property
    def difficulty(self) -> int:
        if self.level is not None:
            return self.level
        return min((lvl for lvl, k in LEVEL_OPS.items() if k >= self.op_count), default=4)

    @property
    def op_count(self) -> int:
        """Operators per program: op_sequence's, num_ops, or the level's."""
        if self.op_sequence:
            return len(self.op_sequence)
        return self.num_ops or LEVEL_OPS[self.level]

    @property
    def single_output(self) -> bool:
        """One output, every operator reading the newest tensor: KernelBench's format (its
        forward returns one tensor) and the chain topology."""
        return self.format == "kernelbench" or self.topology == "chain"

    @property
    def walks(self) -> bool:
        """Level 0 or 1 without num_ops: operators by a fixed walk over the pool, not drawn."""
        return self.op_sequence is None and self.num_ops is None and self.level in (0, 1)

    def pool(self) -> list[str]:
        """The operators a level may use, sorted (the registry's order)."""
        allowed = set(self.ops) if self.ops is not None else set(OPERATORS)
        return [n for n in OPERATORS if n in allowed and n not in set(self.exclude_ops)]

    def _cheapest_program(self) -> tuple[int, str]:
        """FLOPs floor of the cheapest program this spec can ask for (for the up-front check)."""
        if self.op_sequence:
            return sum(OPERATORS[n].min_flops() for n in self.op_sequence), "op_sequence"
        floors = sorted(OPERATORS[n].min_flops() for n in self.pool())
        if self.walks:  # every operator of the pool must fit
            return self.op_count * floors[-1], f"level {self.level} (it walks every operator)"
        return self.op_count * floors[0], f"num_ops {self.num_ops}" if self.num_ops else f"level {self.level}"
