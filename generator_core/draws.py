"""Which operators index `index` of a spec gets, before any wiring or solving.

Level 0 cycles the pool. Level 1 walks every ordered pair, in a seeded order. Levels 2-4,
and `num_ops`, draw from (seed, operator count, index), so levels are independent of each
other. The draws keep every operator's share near uniform, including at windows that only
some operators can reach.

Why an anchor: at the default window (2**34..2**35 FLOPs) a program reaches the floor only
through an operator with many FLOPs per element (a matmul, a convolution, a wide pool: a
"carrier"). Redrawing every combination without one, as tcgen did before, favoured the
carriers: 2.7x uniform for AvgPool3d at level 2. Instead one slot, at a uniform position,
takes a uniform carrier, and the other slots are drawn with weights that make every
operator's expected count k/n. That is exact when the carriers are at least n/k of the
pool. With fewer, each program still needs one carrier, so carriers get n/(h*k) of uniform
and the rest (k-1)/k * n/(n-h): the least uneven shares possible (`draw_weights`).
"""
from __future__ import annotations

import functools
import random

from generator_core.graph import wire
from generator_core.ops import OPERATORS, Operator
from generator_core.ops.reduction import MAX_INDEX_SLICES
from generator_core.seeds import derive_seed
from generator_core.solve import DTYPE_BYTES
from generator_core.spec import GenerationSpec
from generator_core.symbolic import MAX_DIM

# Attempts that solve with a fresh draw: some combinations make no gradeable program in any
# wiring (Cos of a mean of Hardsigmoid values is positive, so a LeakyReLU after it is always
# the identity), so from attempt REDRAW_FROM_ATTEMPT on an index draws anew every REDRAW_EVERY.
REDRAW_FROM_ATTEMPT, REDRAW_EVERY = 12, 4
COMBINATION_DRAWS = 64
# Draws must reach the floor comfortably, not just in theory: a combination whose only
# scalable operator is a pool reaches 2**34 only with a 4 GiB input, which CP-SAT finds
# late if at all (measured: such draws were the solver's slowest and most often relaxed).
REACH_HEADROOM = 4


def combination(spec: GenerationSpec, index: int, attempt: int = 0) -> list[Operator]:
    """The operators, in chain order, of attempt `attempt` of `index`."""
    if spec.op_sequence:
        return [OPERATORS[n] for n in spec.op_sequence]
    pool = [OPERATORS[n] for n in spec.pool()]
    if spec.walks and spec.level == 0:
        return [pool[index % len(pool)]]
    if spec.walks:
        return level1_pair(spec, pool, index)
    redraw = max(0, (attempt - REDRAW_FROM_ATTEMPT) // REDRAW_EVERY + 1)
    # The first draw's seed has no redraw part, so the combinations of earlier samples stay.
    rng = random.Random(derive_seed(spec.seed, index, "ops", spec.op_count, *([redraw] if redraw else [])))
    names = tuple(op.name for op in pool)
    carriers, weights = draw_weights(names, spec.op_count, reach_key(spec))
    fallback = None
    for _ in range(COMBINATION_DRAWS):
        ops, anchor_slot = _draw(rng, pool, carriers, weights, spec.op_count)
        if carriers:
            # A carrier the rest of the program starves (a pool before an ArgMin) is
            # redrawn alone, so that the other slots keep their shares.
            for _ in range(len(carriers)):
                if reaches_floor(ops, spec):
                    break
                ops[anchor_slot] = OPERATORS[rng.choice(carriers)]
        if sum(op.min_flops() for op in ops) > spec.max_flops:
            continue
        if spec.single_output and not single_output_wireable(ops, spec.dtype):
            continue
        fallback = fallback or ops
        if reaches_floor(ops, spec):
            return ops
    # No draw reaches the floor (e.g. a pool of cheap operators): keep one that fits the
    # ceiling; solving will relax the floor and flag it.
    return fallback or [min(pool, key=lambda op: op.min_flops())] * spec.op_count


def _draw(rng: random.Random, pool: list[Operator], carriers: list[str], weights: list[float],
          k: int) -> tuple[list[Operator], int]:
    """k operators and the anchor's slot (-1: no anchor, every operator uniform)."""
    if not carriers:
        return [rng.choice(pool) for _ in range(k)], -1
    anchor_slot = rng.randrange(k)
    ops = [OPERATORS[rng.choice(carriers)] if i == anchor_slot else rng.choices(pool, weights)[0] for i in range(k)]
    return ops, anchor_slot


def reach_key(spec: GenerationSpec) -> tuple:
    """What decides which operators carry the window alone (a hashable cache key)."""
    return (spec.min_flops, spec.max_tensor_numel, spec.max_total_bytes, spec.dtype)


@functools.lru_cache(maxsize=64)
def draw_weights(names: tuple[str, ...], k: int, reach_key: tuple) -> tuple[list[str], list[float]]:
    """The carriers (operators that reach the floor alone) and the weights of the non-anchor
    slots, per operator of `names`; no carriers when every operator is one (uniform draws)."""
    min_flops, max_tensor_numel, max_total_bytes, dtype = reach_key
    per_tensor = _per_tensor(k, max_tensor_numel, max_total_bytes, dtype)
    carriers = [n for n in names if _reach(OPERATORS[n], per_tensor) >= REACH_HEADROOM * min_flops]
    n, h = len(names), len(carriers)
    if h in (0, n):  # all reach the floor alone (small windows), or none does: uniform
        return [], []
    if k == 1:  # the anchor is the whole program
        return carriers, [1.0] * n
    # Expected count per operator: carrier 1/h + (k-1)*w_c, other (k-1)*w_o; both k/n when
    # w_c = (k/n - 1/h)/(k-1) >= 0. Below that the carriers take no further slot.
    w_carrier = max(0.0, (k / n - 1 / h) / (k - 1))
    w_other = (1 - h * w_carrier) / (n - h)
    chosen = set(carriers)
    return carriers, [w_carrier if name in chosen else w_other for name in names]


def _per_tensor(k: int, max_tensor_numel: int, max_total_bytes: int, dtype: str) -> int:
    """Elements one tensor of a k-operator program may hold under the caps (a share of the
    byte budget: k outputs and an input)."""
    return min(max_tensor_numel, max_total_bytes // DTYPE_BYTES[dtype] // (k + 1))


def _reach(op: Operator, per_tensor: int) -> int:
    return max(op.flops_per_element_bound, op.flops_per_element) * per_tensor


def reachable_estimate(ops: list[Operator], spec: GenerationSpec) -> int:
    """Roughly the most FLOPs these operators reach under the caps: each operator's most
    FLOPs per element (a reduction length or window for matmul, conv, pool) times its share
    of the program's element budget (max_total_bytes, max_tensor_numel). An index reduction
    (ArgMax, ArgMin) keeps at most MAX_INDEX_SLICES slices of at most MAX_DIM elements, and
    the operators before it shrink to that (measured: a pool followed or preceded by ArgMin
    never reached 2**34, while matmuls and convolutions reach it through their contraction)."""
    per_tensor = _per_tensor(len(ops), spec.max_tensor_numel, spec.max_total_bytes, spec.dtype)
    if any(op.index_output for op in ops):
        per_tensor = min(per_tensor, MAX_INDEX_SLICES[spec.dtype] * MAX_DIM)
    return sum(_reach(op, per_tensor) for op in ops)


def reaches_floor(ops: list[Operator], spec: GenerationSpec) -> bool:
    """Can these operators reach the window's floor comfortably (REACH_HEADROOM)?"""
    return reachable_estimate(ops, spec) >= REACH_HEADROOM * spec.min_flops


def level1_pair(spec: GenerationSpec, pool: list[Operator], index: int) -> list[Operator]:
    """Level 1: index k is pair k mod P of a seeded permutation of the P ordered pairs, a new
    permutation per block of P indices, so every block covers each pair once and any prefix
    is spread over the pool. With one output (KernelBench's format, the chain topology),
    the pairs one output can join (a pool
    with none, ops=["Abs"]: Abs of Abs, walks the plain pairs, whose every attempt then says
    "no single-output wiring", and the index is given up with those reasons)."""
    names = tuple(op.name for op in pool)
    pairs = single_output_pairs(names, spec.dtype) if spec.single_output else []
    if not pairs:
        pairs = [(a, b) for a in names for b in names]
    block, position = divmod(index, len(pairs))
    order = _pair_order(len(pairs), spec.seed, block)
    first, second = pairs[order[position]]
    return [OPERATORS[first], OPERATORS[second]]


@functools.lru_cache(maxsize=8)
def _pair_order(count: int, seed: int, block: int) -> list[int]:
    order = list(range(count))
    random.Random(derive_seed(seed, "pairs", block)).shuffle(order)
    return order


def single_output_wireable(ops: list[Operator], dtype: str) -> bool:
    """Can these operators, in this order, make a program with one output (KernelBench's
    format)? Not when an operator is degenerate on whatever the one before it makes (Abs of
    Abs; ArgMin of a Tril's zeros): it would start a second branch. Decided on a fixed
    wiring seed, so that the answer depends on the operators only."""
    return wire(ops, random.Random(0), "dag", dtype, single_output=True) is not None


@functools.cache
def single_output_pairs(pool: tuple[str, ...], dtype: str) -> list[tuple[str, str]]:
    """Level 1's ordered pairs, less the pairs no single-output wiring joins (316 of the
    9,216 pairs of the 96-operator catalogue)."""
    return [(a, b) for a in pool for b in pool if single_output_wireable([OPERATORS[a], OPERATORS[b]], dtype)]
