"""Random wiring: turns an operator combination into a graph of symbolic tensors.

Wiring decides everything discrete (ranks, axes, keepdim, which tensor feeds which
operator) before CP-SAT sees the model, and only builds what is known to be solvable:
an operator is fed a tensor it `accepts`, partners of shape-preserving operators share the
very same dimension Vars, and where no produced tensor has a rank the next operator takes,
a reshape adapter (numel preserved) bridges the ranks. So a randomly drawn combination
never fails for structural reasons; only the FLOPs window and memory caps are left to the
solver.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Any

from generator_core.ops.base import Operator, Plan
from generator_core.rank_adapter import RESHAPE
from generator_core.symbolic import MAX_DIM, MIN_NUMEL, Tensor, Var

# Chance that a DAG operator reads an older tensor instead of the newest one (fan-out,
# several outputs) and that a partner input reuses an existing tensor (residual edges).
FAN_OUT_P = 0.3
REUSE_P = 0.4
# Fresh tensors rarely get rank 1: at most 8192 elements, too small for most FLOPs windows.
RANK_WEIGHT = {1: 0.1, 2: 1.0, 3: 1.0, 4: 1.0, 5: 0.6}


@dataclass(eq=False)
class Node:
    op: Operator
    inputs: list[Tensor]
    output: Tensor
    params: dict[str, Any]

    @property
    def is_adapter(self) -> bool:
        return self.op.is_adapter


@dataclass
class Graph:
    inputs: list[Tensor] = field(default_factory=list)
    nodes: list[Node] = field(default_factory=list)

    @property
    def outputs(self) -> list[Tensor]:
        return [n.output for n in self.nodes if not n.output.consumers]

    def tensors(self) -> list[Tensor]:
        return self.inputs + [n.output for n in self.nodes]

    def variables(self) -> list[Var]:
        """Every Var once, in creation order of first use (deterministic)."""
        seen: dict[int, Var] = {}
        for t in self.tensors():
            for d in t.dims:
                seen.setdefault(id(d), d)
        for n in self.nodes:
            for p in n.params.values():
                if isinstance(p, Var):
                    seen.setdefault(id(p), p)
        return list(seen.values())


def draw_dim_hint(rng: random.Random, lo: int, hi: int) -> int:
    """Log-uniform sizes, often a power of two as in real models."""
    if rng.random() < 0.4:
        value = 2 ** rng.randint(1, 12)
    else:
        value = int(round(2 ** rng.uniform(0.5, 12.5)))
    return min(max(value, lo), hi)


class Builder:
    """Creates Vars and tensors for one wiring attempt; handed to `Operator.plan`."""

    def __init__(self, rng: random.Random, topology: str, dtype: str = "float32", single_output: bool = False):
        self.rng = rng
        self.topology = topology
        self.single_output = single_output
        self.dtype = dtype
        self.graph = Graph()
        self._var_count = 0

    # -- variables ----------------------------------------------------------------------
    def _name(self, base: str) -> str:
        self._var_count += 1
        return f"{base}_{self._var_count}"

    def dim(self, lo: int = 1, hi: int = MAX_DIM) -> Var:
        hint = draw_dim_hint(self.rng, lo, hi)
        band = (max(lo, hint // 4), min(hi, hint * 4))
        return Var(self._name("dim"), lo, hi, hint=hint, band=band)

    def derived_dim(self) -> Var:
        """A size computed from others by a constraint (conv output, cat sum): no hint."""
        return Var(self._name("dim"), 1, MAX_DIM)

    def fixed(self, value: int) -> Var:
        return Var(self._name("dim"), value, value, hint=value)

    def param(self, name: str, lo: int, hi: int, hint: int) -> Var:
        """A solver-chosen operator parameter, tried first at exactly its drawn `hint`."""
        hint = min(max(hint, lo), hi)
        return Var(self._name(name), lo, hi, hint=hint, band=(hint, hint))

    # -- tensors ------------------------------------------------------------------------
    def fresh_input(self, dims: tuple[Var, ...]) -> Tensor:
        """A graph input, drawn standard normal."""
        t = Tensor("", tuple(dims), is_input=True)
        self.graph.inputs.append(t)
        return t

    def parameter(self, dims: tuple[Var, ...], fan_in: tuple[Var, ...] | None = None,
                  min_numel: int = MIN_NUMEL) -> Tensor:
        """A graph input that is an operator's learnable parameter (an nn.Parameter in
        KernelBench's format). With `fan_in` (Vars whose product is the fan-in torch.nn
        counts: a weight's own axes, or a bias's weight's), drawn uniform in +-1/sqrt(fan_in)
        as torch.nn initialises them; without, standard normal (nn.Parameter(torch.randn))."""
        t = Tensor("", tuple(dims), is_weight=True, is_input=True, fan_in=fan_in, min_numel=min_numel)
        self.graph.inputs.append(t)
        return t

    def fresh_dims(self, rank: int) -> tuple[Var, ...]:
        return tuple(self.dim() for _ in range(rank))

    def partner(self, x: Tensor, dims: tuple[Var, ...], free_axis: int | None = None) -> Tensor:
        """Second input of a binary operator: in a DAG, sometimes an existing tensor with
        the same dimension Vars (a residual edge, adding no constraint), else a fresh
        input. With `free_axis`, that axis may differ (Cat)."""
        if self.topology == "dag":
            candidates = [
                t for t in self.graph.tensors()
                if t is not x and not t.is_weight and not t.is_index and t.rank == len(dims)
                and all(a is b for i, (a, b) in enumerate(zip(t.dims, dims)) if i != free_axis)
            ]
            if candidates and self.rng.random() < REUSE_P:
                return self.rng.choice(candidates)
        return self.fresh_input(dims)

    def add_node(self, op: Operator, plan: Plan) -> Node:
        adapter = op.is_adapter
        facts = _facts(op, plan.inputs[0])
        if self.dtype != "float32" and (not adapter or "rounded" in plan.inputs[0].facts):
            # Computed in a half type: every value rounded to 8 or 11 bits, so near-equal
            # values tie or swap order (an index operator reads such values only raw).
            # A reshape moves values: rounded only if they were.
            facts |= {"rounded"}
        out = Tensor("", tuple(plan.out_dims), is_index=plan.is_index, is_view=adapter, facts=facts)
        node = Node(op, plan.inputs, out, plan.params)
        for t in plan.inputs:
            t.consumers.append(node)
        self.graph.nodes.append(node)
        return node


def _choose_rank(rng: random.Random, op: Operator, want: set[int] | None, prefer: int | None = None) -> int:
    ranks = list(op.input_ranks)
    # A rank-1 tensor holds at most 8192 elements and throttles every FLOPs window
    # downstream, so avoid input ranks that make the operator output one.
    roomy = [r for r in ranks if min(op.output_ranks(r)) >= 2]
    ranks = roomy or ranks
    if want:
        good = [r for r in ranks if op.output_ranks(r) & want]
        ranks = good or ranks
    if prefer in ranks and rng.random() < 0.5:
        return prefer
    return rng.choices(ranks, weights=[RANK_WEIGHT[r] for r in ranks])[0]


# A single-output wiring (KernelBench's format) may still leave a second sink: where an
# operator would be degenerate on the newest tensor it starts a new branch. Such wirings are
# drawn again, from the same generator, this many times before the attempt gives up.
SINGLE_OUTPUT_DRAWS = 16


def wire(ops: list[Operator], rng: random.Random, topology: str, dtype: str = "float32",
         single_output: bool = False) -> Graph | None:
    """A graph of `ops`; with `single_output`, one whose only sink is the last node (each
    operator reads the newest tensor, as in a chain; partners may still be older tensors),
    or None when SINGLE_OUTPUT_DRAWS wirings all had more."""
    for _ in range(SINGLE_OUTPUT_DRAWS if single_output else 1):
        graph = _wire(ops, rng, topology, dtype, single_output)
        if not single_output or len(graph.outputs) == 1:
            return graph
    return None


def _wire(ops: list[Operator], rng: random.Random, topology: str, dtype: str, single_output: bool) -> Graph:
    b = Builder(rng, topology, dtype, single_output)
    produced: list[Tensor] = []
    for i, op in enumerate(ops):
        want = set(ops[i + 1].input_ranks) if i + 1 < len(ops) else None
        if not produced:
            x = b.fresh_input(b.fresh_dims(_choose_rank(rng, op, want)))
        else:
            x = _pick_input(b, op, produced)
            if x is None and not degenerate(op, produced[-1]):
                rank = _choose_rank(rng, op, want, prefer=produced[-1].rank)
                plan = RESHAPE.plan_to_rank(b, produced[-1], rank)
                if not op.accepts(Tensor("", plan.out_dims)):
                    plan = RESHAPE.plan_to_rank(b, produced[-1], rank, fresh=True)
                x = b.add_node(RESHAPE, plan).output
            elif x is None:  # no produced tensor has values this op can use: a new branch
                x = b.fresh_input(b.fresh_dims(_choose_rank(rng, op, want)))
        node = b.add_node(op, op.plan(b, x, want))
        produced.append(node.output)
    return b.graph


def _facts(op: Operator, x: Tensor) -> frozenset[str]:
    # A reduction of sparse values is not sparse (sums, means and maxima are mostly > 0).
    # A triangle's shape is known only to the operator reading it directly.
    lost = {"monotone", "upper", "lower"} | ({"sparse"} if op.family == "reduction" else set())
    if op.family != "layout":  # |x| stays |x| only when moved, not when computed with
        lost |= {"absolute", "keeps_positive"} | ({"increasing"} - op.makes_facts)
    facts = op.makes_facts | (x.facts - lost if op.keeps_facts else frozenset())
    if op.extreme_of_large and "large" in x.facts:
        facts |= {"saturating"}
    return facts


def degenerate(op: Operator, x: Tensor) -> bool:
    """Would `op` make a constant of `x`'s values (ReLU of all-negative log-probabilities),
    or leave them unchanged (Abs of Abs: a node a grader's task would not need)?"""
    return bool((op.collapses_on | op.pointless_on) & x.facts)


def usable(op: Operator, x: Tensor) -> bool:
    return op.accepts(x) and not degenerate(op, x)


def _room(t: Tensor) -> int:
    return sum(not d.fixed for d in t.dims)


def _pick_input(b: Builder, op: Operator, produced: list[Tensor]) -> Tensor | None:
    newest = produced[-1]
    if b.topology == "chain" or b.single_output:
        return newest if usable(op, newest) else None
    older = [t for t in produced[:-1] if usable(op, t)]
    if op.flops_per_element_bound and older:
        # A FLOPs-heavy operator reads the roomiest tensor (most axes not pinned): one fed
        # through two reductions holds too few elements to reach a large window.
        return max(older + [newest] if usable(op, newest) else older, key=_room)
    if older and b.rng.random() < FAN_OUT_P:
        return b.rng.choice(older)
    if usable(op, newest):
        return newest
    return b.rng.choice(older) if older else None


__all__ = ["Builder", "Graph", "Node", "wire"]
