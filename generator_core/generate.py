"""(spec, index) -> Sample: pick the operators, then wire, solve, render and validate,
moving to the next attempt of the same index when an attempt is rejected."""
from __future__ import annotations

import math
import random
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from generator_core.draws import combination, reachable_estimate
from generator_core.graph import wire
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
# A floor the solver could not meet (in budget, or proven out of reach for that wiring) is
# retried with fresh wirings first; only from this attempt on may it be relaxed. Rewiring a
# proven-infeasible wiring (4 tries, not 2, and not relaxing it at once) halved the level-2
# samples outside the default window (18 to 9 of 200, seed 0).
RELAX_FROM_ATTEMPT = 4


class GenerationError(RuntimeError):
    """No valid sample for this index within MAX_ATTEMPTS; says why each attempt failed."""


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
    graph = wire(ops, random.Random(seed), spec.topology, spec.dtype, single_output=spec.single_output)
    if graph is None:
        return f"attempt {attempt}: no single-output wiring"
    # A combination that cannot reach the floor in any wiring (cheap level-1 pairs at the
    # default window) relaxes at once; others get fresh wirings first.
    may_relax = attempt >= RELAX_FROM_ATTEMPT or reachable_estimate(ops, spec) < spec.min_flops
    solution = solve_graph(graph, limits, seed % 2**31, may_relax=may_relax)
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
