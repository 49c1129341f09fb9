"""CP-SAT: one model per wired graph, solved in stages from most to least steered.

Every Var becomes an IntVar of the same name; products of Vars are memoised IntVars, so
the numel of ten tensors that share dims costs a handful of multiplications. Solving is
seeded, single-threaded and bounded by *deterministic* time, so a solution is a pure
function of the model and the seed, in any process on any machine speed.

Stages (see `solve_graph`): (1) every Var inside its drawn band (parameters at their
drawn value, dims near their drawn size): natural, varied shapes; (2) bands dropped, hints
kept. If the floor is out of reach under the memory caps then, as in the original,
min_flops is halved until a solution meets it (the sample is flagged `flops_window_relaxed`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Sequence

from ortools.sat.python import cp_model

from generator_core.graph import Graph
from generator_core.symbolic import MIN_NUMEL, Term, Var

DTYPE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
INDEX_BYTES = 8
# CP-SAT deterministic-time budgets (units of roughly a second on a fast core).
# Stage name (which Vars keep their drawn band) and its budget. With parameters fixed the
# window arithmetic (dilation * (kernel - 1), division by stride) is linear, which CP-SAT
# solves far faster than the same model over free parameters.
STAGES = (("all", 0.01), ("none", 0.02))
HALVING_DETERMINISTIC_LIMIT = 0.02  # per halved floor
WALL_LIMIT_SECONDS = 20.0  # a safety net only: hitting it would make results machine-dependent


@dataclass
class Limits:
    min_flops: int
    max_flops: int
    max_tensor_numel: int
    max_total_bytes: int
    dtype: str


@dataclass
class Solution:
    values: dict[Var, int]
    flops: int
    min_flops: int  # the floor actually used (lower than asked when relaxed)
    relaxed: bool
    stage: str


class ShapeModel:
    """A CP-SAT model over the graph's Vars, with the few helpers operators need."""

    def __init__(self, cap: int, dtype: str = "float32"):
        self.model = cp_model.CpModel()
        self.cap = cap  # upper bound of every product: implied by the numel and FLOPs caps
        self.dtype = dtype  # the program's dtype (some operators' limits depend on it)
        self._vars: dict[int, cp_model.IntVar] = {}
        self._bounds: dict[int, tuple[int, int]] = {}
        self._products: dict[tuple[int, ...], cp_model.IntVar] = {}

    def new_var(self, lo: int, hi: int, name: str) -> cp_model.IntVar:
        var = self.model.new_int_var(lo, hi, name)
        self._bounds[var.index] = (lo, hi)
        return var

    def v(self, var: Var) -> cp_model.IntVar:
        if id(var) not in self._vars:
            self._vars[id(var)] = self.new_var(var.lo, var.hi, var.name)
        return self._vars[id(var)]

    def add(self, constraint) -> None:
        self.model.add(constraint)

    def expr_var(self, expr, lo: int, hi: int) -> cp_model.IntVar:
        """A fresh IntVar equal to a linear expression (CP-SAT multiplies variables only)."""
        var = self.new_var(lo, hi, "")
        self.model.add(var == expr)
        return var

    def product(self, factors: Sequence[Var | cp_model.IntVar]) -> cp_model.IntVar:
        ints = sorted((self.v(f) if isinstance(f, Var) else f for f in factors), key=lambda x: x.index)
        product = ints[0]
        for i in range(1, len(ints)):
            key = tuple(x.index for x in ints[: i + 1])
            if key not in self._products:
                (alo, ahi), (blo, bhi) = self._bounds[product.index], self._bounds[ints[i].index]
                lo = alo * blo
                var = self.new_var(lo, max(lo, min(ahi * bhi, self.cap)), "")
                self.model.add_multiplication_equality(var, [product, ints[i]])
                self._products[key] = var
            product = self._products[key]
        return product

    def add_division(self, target, numerator, denominator) -> None:
        """target == numerator // denominator (numerator >= 0)."""
        quotient = self.new_var(0, self._bounds[numerator.index][1], "")
        self.model.add_division_equality(quotient, numerator, denominator)
        self.model.add(target == quotient)

    def max_var(self, variables: Sequence[cp_model.IntVar]) -> cp_model.IntVar:
        hi = max(self._bounds[v.index][1] for v in variables)
        var = self.new_var(0, hi, "")
        self.model.add_max_equality(var, variables)
        return var

    def term(self, term: Term):
        return term.coef * self.product(term.factors) if term.factors else term.coef


def flops_terms(graph: Graph) -> list[list[Term]]:
    return [node.op.flops(node) for node in graph.nodes]


def build_model(graph: Graph, limits: Limits, min_flops: int, banded: str):
    """banded: "all" (each Var kept within its band, dims and parameters) or "none"."""
    m = ShapeModel(cap=max(limits.max_flops, limits.max_tensor_numel), dtype=limits.dtype)
    for node in graph.nodes:
        node.op.constrain(node, m)
    total_bytes = []
    for t in graph.tensors():
        numel = m.product(list(t.dims))
        m.add(numel >= t.min_numel)
        m.add(numel <= limits.max_tensor_numel)
        if not t.is_view:
            total_bytes.append(numel * (INDEX_BYTES if t.is_index else DTYPE_BYTES[limits.dtype]))
    m.add(sum(total_bytes) <= limits.max_total_bytes)
    flops = sum(m.term(t) for terms in flops_terms(graph) for t in terms)
    m.add(flops >= min_flops)
    m.add(flops <= limits.max_flops)
    for var in graph.variables():
        iv = m.v(var)
        if var.hint is not None:
            m.model.add_hint(iv, var.hint)
        if var.band is not None and banded == "all":
            m.add(iv >= var.band[0])
            m.add(iv <= var.band[1])
    return m, flops


def _run(m: ShapeModel, seed: int, limit: float) -> cp_model.CpSolver | None:
    """The solver, if it found a solution."""
    solver = cp_model.CpSolver()
    solver.parameters.num_workers = 1
    solver.parameters.random_seed = seed
    # Measured on levels 2-4 at the default window: quick restarts over the heuristics
    # portfolio find a solution in ~10 ms where the default single-worker search spends
    # seconds in one branch of the product constraints.
    solver.parameters.search_branching = cp_model.PORTFOLIO_WITH_QUICK_RESTART_SEARCH
    solver.parameters.max_deterministic_time = limit
    solver.parameters.max_time_in_seconds = WALL_LIMIT_SECONDS
    # CP-SAT catches Ctrl-C by default and returns the best solution so far, which would
    # write a machine-timing-dependent sample; the caller decides what a signal stops.
    solver.parameters.catch_sigint_signal = False
    status = solver.solve(m.model)
    return solver if status in (cp_model.OPTIMAL, cp_model.FEASIBLE) else None


def _solution(m: ShapeModel, solver, graph: Graph, min_flops: int, relaxed: bool, stage: str) -> Solution:
    values = {var: solver.value(m.v(var)) for var in graph.variables()}
    flops = sum(t.value(values) for terms in flops_terms(graph) for t in terms)
    return Solution(values, flops, min_flops, relaxed, stage)


def solve_graph(graph: Graph, limits: Limits, seed: int, may_relax: bool = True) -> Solution | None:
    """Stages: feasibility inside the drawn bands of every Var, then with no bands (hints
    kept). If `may_relax` (the caller's later tries, or operators that cannot reach the
    floor in any wiring), the original's fallback follows: min_flops is halved until a
    solution meets it (the sample is flagged relaxed). None means: rewire and try again (a
    fresh wiring is usually easier than more search, and a floor one wiring cannot reach
    another often can)."""
    terms = flops_terms(graph)
    if not all(terms):
        # Transpose, Cat, Tril... do no arithmetic, so the window cannot size their tensors,
        # and the element cap alone allowed multi-GB programs at any window (measured at
        # 2**16..2**22: 2.5% of level-0 samples over 256 MB, up to 5.6 GB; a level-2
        # Minimum -> Cat -> Transpose of 1 MFLOP at 519 MB). Keep them at the window's
        # scale: no tensor above max_flops elements, as an elementwise operator inside the
        # window would be (every arithmetic operator does at least one FLOP per element).
        limits = replace(limits, max_tensor_numel=min(limits.max_tensor_numel, max(limits.max_flops, MIN_NUMEL)))
    floor = limits.min_flops if any(terms) else 0
    for stage, limit in STAGES:
        m, _ = build_model(graph, limits, floor, banded=stage)
        solver = _run(m, seed, limit)
        if solver is not None:
            return _solution(m, solver, graph, floor, floor < limits.min_flops, stage)
    if not may_relax:
        return None
    # Halving, not maximising FLOPs: an out-of-reach floor is usually proven infeasible in
    # well under a millisecond, while a maximisation runs its whole budget whenever the
    # floor is unreachable (measured: 0.15-0.4 s per relaxed sample on this 2-core machine).
    while floor > 0:
        floor //= 2
        m, _ = build_model(graph, limits, floor, banded="none")
        solver = _run(m, seed, HALVING_DETERMINISTIC_LIMIT)
        if solver is not None:
            return _solution(m, solver, graph, floor, True, "relaxed")
    return None  # structurally infeasible (or out of budget): the caller rewires
