"""(spec, index) -> Sample: pick the operators, then wire, solve, render and validate,
moving to the next attempt of the same index when an attempt is rejected."""
from __future__ import annotations

import functools
import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from generator_core.graph import wire
from generator_core.ops import OPERATORS, Operator
from generator_core.render import graph_id, render_program
from generator_core.seeds import derive_seed
from generator_core.sample import Baseline, Sample
from generator_core.solve import DTYPE_BYTES, INDEX_BYTES, Limits, solve_graph
from generator_core.spec import GenerationSpec

if TYPE_CHECKING:  # torch is imported only where programs are executed (validation)
    from generator_core.validate import Verdict

# Attempts per index. Each rejection rewires the same operators, and the grading rules
# reject some wirings of a combination (a node made pointless by what it reads, half-type
# rounding), so an index gets 24 tries before it is given up (it had 8 before the rules; at
# level 4 in bfloat16, seed 11, 2**16..2**22: 16 tries gave up 7 of 60 indices, 32 gave up 2).
MAX_ATTEMPTS = 24
REDRAW_FROM_ATTEMPT, REDRAW_EVERY = 12, 4
COMBINATION_DRAWS = 64
# Draws must reach the floor comfortably, not just in theory: a combination whose only
# scalable operator is a pool reaches 2**34 only with a 4 GiB input, which CP-SAT finds
# late if at all (measured: such draws were the solver's slowest and most often relaxed).
REACH_HEADROOM = 4
# A floor the solver could not meet in budget (but did not prove out of reach) is retried
# with fresh wirings first; only from this attempt on may it be relaxed.
RELAX_FROM_ATTEMPT = 2


class GenerationError(RuntimeError):
    """No valid sample for this index within MAX_ATTEMPTS; says why each attempt failed."""


def combination(spec: GenerationSpec, index: int, attempt: int = 0) -> list[Operator]:
    """Level 0 cycles the pool by index, level 1 walks all ordered pairs, levels 2-4 (and
    num_ops, whatever the level) draw from (seed, index), preferring draws that can reach
    the FLOPs window. From attempt REDRAW_FROM_ATTEMPT on, levels 2-4 draw anew every REDRAW_EVERY attempts: some
    combinations make no gradeable program in any wiring (Cos of a mean of Hardsigmoid
    values is positive, so a LeakyReLU after it is always the identity)."""
    if spec.op_sequence:
        return [OPERATORS[n] for n in spec.op_sequence]
    pool = [OPERATORS[n] for n in spec.pool()]
    n = len(pool)
    if spec.walks and spec.level == 0:
        return [pool[index % n]]
    if spec.walks:  # level 1
        # In KernelBench's format, the pairs one output can join, in walk order. A pool with
        # none (ops=["Abs"]: Abs of Abs) walks the plain pairs, whose every attempt then says
        # "no single-output wiring", and the index is given up with those reasons.
        pairs = single_output_pairs(tuple(op.name for op in pool), spec.dtype) if spec.format == "kernelbench" else []
        if pairs:
            first, second = pairs[index % len(pairs)]
            return [OPERATORS[first], OPERATORS[second]]
        return [pool[(index // n) % n], pool[index % n]]
    redraw = max(0, (attempt - REDRAW_FROM_ATTEMPT) // REDRAW_EVERY + 1)
    # The first draw's seed has no redraw part, so the combinations of earlier samples stay.
    rng = random.Random(derive_seed(spec.seed, index, "ops", *([redraw] if redraw else [])))
    fallback = None
    for _ in range(COMBINATION_DRAWS):
        ops = [rng.choice(pool) for _ in range(spec.op_count)]
        if sum(op.min_flops() for op in ops) > spec.max_flops:
            continue
        if spec.format == "kernelbench" and not single_output_wireable(ops, spec.dtype):
            continue
        fallback = fallback or ops
        if reachable_estimate(ops, spec) >= REACH_HEADROOM * spec.min_flops:
            return ops
    # No draw reaches the floor (e.g. a pool of cheap operators): keep one that fits the
    # ceiling; solving will relax the floor and flag it.
    return fallback or [min(pool, key=lambda op: op.min_flops())] * spec.op_count


def single_output_wireable(ops: list[Operator], dtype: str) -> bool:
    """Can these operators, in this order, make a program with one output (KernelBench's
    format)? Not when an operator is degenerate on whatever the one before it makes (Abs of
    Abs; ArgMin of a Tril's zeros): it would start a second branch. Decided on a fixed
    wiring seed, so that the answer depends on the operators only."""
    return wire(ops, random.Random(0), "dag", dtype, single_output=True) is not None


@functools.cache
def single_output_pairs(pool: tuple[str, ...], dtype: str) -> list[tuple[str, str]]:
    """Level 1's walk over ordered pairs, less the pairs no single-output wiring joins (170 of
    the 3,721 pairs of the full catalogue)."""
    return [(a, b) for a in pool for b in pool if single_output_wireable([OPERATORS[a], OPERATORS[b]], dtype)]


def reachable_estimate(ops: list[Operator], spec: GenerationSpec) -> int:
    """Roughly the most FLOPs these operators reach under the caps: each operator's most
    FLOPs per element (a reduction length or window for matmul, conv, pool) times its share
    of the program's element budget (max_total_bytes, max_tensor_numel)."""
    budget = spec.max_total_bytes // DTYPE_BYTES[spec.dtype]
    per_tensor = min(spec.max_tensor_numel, budget // (len(ops) + 1))
    return sum(max(op.flops_per_element_bound, op.flops_per_element) * per_tensor for op in ops)


@dataclass
class Candidate:
    """One attempt that solved and rendered: becomes the sample if validation passes.
    Plain data, so a solver process can hand it to a validation process."""

    index: int
    attempt: int
    fields: dict[str, Any]  # Sample fields but attempts, rejected, validation and grading
    steps: list[str]  # the program's node expressions (validation replays them)
    validation_seed: int
    baselines: bool = False
    baseline_compile: bool = False


def solve_attempt(spec: GenerationSpec, index: int, attempt: int) -> Candidate | str:
    """Attempt `attempt` of `index`: wire, solve, render. A str is why it failed."""
    ops = combination(spec, index, attempt)
    limits = Limits(spec.min_flops, spec.max_flops, spec.max_tensor_numel, spec.max_total_bytes, spec.dtype)
    seed = derive_seed(spec.seed, index, attempt)
    graph = wire(ops, random.Random(seed), spec.topology, spec.dtype, single_output=spec.format == "kernelbench")
    if graph is None:
        return f"attempt {attempt}: no single-output wiring"
    solution = solve_graph(graph, limits, seed % 2**31, may_relax=attempt >= RELAX_FROM_ATTEMPT)
    if solution is None:
        return f"attempt {attempt}: no solution"
    program = render_program(graph, solution.values, spec.dtype, spec.format)
    fields = dict(
        pytorch=program.code, difficulty=spec.difficulty,
        id=graph_id(program.graph_json, spec.dtype), level=spec.difficulty, index=index,
        seed=spec.seed, ops=[op.name for op in ops], format=spec.format, dtype=spec.dtype,
        topology=spec.topology, flops=solution.flops,
        flops_by_op=[sum(t.value(solution.values) for t in node.op.flops(node)) for node in graph.nodes],
        min_flops=solution.min_flops, max_flops=spec.max_flops, flops_window_relaxed=solution.relaxed,
        input_shapes=program.input_shapes, output_shapes=program.output_shapes,
        bytes=_bytes(graph, solution.values, spec.dtype), graph=program.graph_json,
    )
    return Candidate(index, attempt, fields, program.steps, validation_seed=seed, baselines=spec.baselines,
                     baseline_compile=spec.baseline_compile)


def validate_candidate(candidate: Candidate, *, device: str, timings: dict[str, float] | None = None) -> Verdict:
    from generator_core.validate import validate_program

    f = candidate.fields
    return validate_program(f["pytorch"], f["output_shapes"], fmt=f["format"], device=device,
                            seed=candidate.validation_seed, dtype=f["dtype"], graph=f["graph"],
                            steps=candidate.steps, timings=timings)


def baseline_of(candidate: Candidate, *, device: str) -> Baseline | None:
    """The sample's timings on `device`, when its spec asks for them (after it validated)."""
    if not candidate.baselines:
        return None
    from generator_core.baseline import measure_baseline

    f = candidate.fields
    return measure_baseline(f["pytorch"], f["format"], device=device, seed=candidate.validation_seed,
                            compile=candidate.baseline_compile)


def make_sample(candidate: Candidate, rejected: list[str], verdict: Verdict | None,
                baseline: Baseline | None = None) -> Sample:
    """The sample of an attempt that passed (`verdict` None: validation was off)."""
    return Sample(**candidate.fields, attempts=candidate.attempt + 1, rejected=rejected,
                  validation=verdict.validation if verdict else None,
                  grading=verdict.grading if verdict else None, baseline=baseline)


def rejection(candidate: Candidate, verdict: Verdict) -> str:
    return f"attempt {candidate.attempt}: {verdict.reason}"


def give_up(spec: GenerationSpec, index: int, rejected: list[str]) -> GenerationError:
    names = ", ".join(op.name for op in combination(spec, index, len(rejected) - 1))
    return GenerationError(f"index {index} ({names}): " + "; ".join(rejected))


def generate(spec: GenerationSpec, index: int, *, device: str = "cpu") -> Sample:
    """The sample at `index`: attempts in order until one solves and (if asked) validates.
    The engine (service/engine) runs the same three steps in separate processes."""
    rejected: list[str] = []
    for attempt in range(MAX_ATTEMPTS):
        candidate = solve_attempt(spec, index, attempt)
        if isinstance(candidate, str):
            rejected.append(candidate)
            continue
        if not spec.validate_samples:
            return make_sample(candidate, rejected, None)
        verdict = validate_candidate(candidate, device=device)
        if verdict.reason is None:
            return make_sample(candidate, rejected, verdict, baseline_of(candidate, device=device))
        rejected.append(rejection(candidate, verdict))
    raise give_up(spec, index, rejected)


def _bytes(graph, values, dtype) -> int:
    """Bytes of every tensor the program allocates (views share their source's)."""
    return sum(math.prod(values[d] for d in t.dims) * (INDEX_BYTES if t.is_index else DTYPE_BYTES[dtype])
               for t in graph.tensors() if not t.is_view)
