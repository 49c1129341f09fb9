"""Symbolic tensors: every dimension and every solver-chosen operator parameter is a `Var`.

Wiring (graph.py) creates Vars and decides ranks; operators add CP-SAT constraints over
them (solve.py turns each Var into one CP-SAT IntVar of the same name); after solving, one
generic lookup turns every Var back into an int. Two tensors that share a Var share that
dimension, so most shape equalities (elementwise ops, residual edges) are free: they are
the same variable, not a constraint.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

MAX_DIM = 8192  # the original's per-dimension limit
MIN_NUMEL = 2**5

# What wiring knows about a tensor's values, so it never feeds an operator values it turns
# into a constant (ReLU after LogSigmoid is all 0):
VALUE_FACTS = {
    "nonpositive": "every value <= 0 (LogSigmoid, LogSoftmax)",
    "nonnegative": "every value >= 0 (Abs, ReLU, Sigmoid, Softmax, ...): Abs and ReLU leave them as they are",
    "increasing": "a strictly increasing map of a tensor (Sigmoid, Tanh, ...): ArgMax / ArgMin of it need not map",
    "keeps_positive": "equal to its input where that is positive (LeakyReLU, ELU): a ReLU after it would not need it",
    "upper": "zero below a diagonal (Triu): another Triu of it repeats one of the two",
    "lower": "zero above a diagonal (Tril): another Tril of it repeats one of the two",
    "absolute": "|x| (Abs): an even function of it (Cos, Norm) would not need the Abs",
    "standardized": "mean 0 and variance 1 along some axes (a norm's output, randn): another norm is about the identity",
    "concentrated": "values in a narrow band away from 0 (Var, Norm, LogSoftmax): clamps saturate",
    "discrete": "few distinct values (ArgMax / ArgMin indices): arg-reductions tie",
    "monotone": "sorted along an axis (CumMax, CumMin): arg-reductions along it are constant",
    "large": "magnitudes grow with a reduction length (Matmul, Bmm, Linear, Conv)",
    "saturating": "large and of one sign (the max of large values): squashing maps saturate",
    "extreme": "the max or min over an axis: one sign, mostly beyond +-1, so clamps saturate",
    "sparse": "about half the values exactly 0 (ReLU): a min over an axis is 0",
    "clipped": "many values at a clip bound (Clamp, HardTanh): a max over a window is the bound",
}


@dataclass(eq=False)
class Var:
    """An integer the solver chooses. `hint` steers it towards a drawn value (diversity);
    `band` is the narrower range tried first, dropped if the model is infeasible with it."""

    name: str
    lo: int
    hi: int
    hint: int | None = None
    band: tuple[int, int] | None = None

    @property
    def fixed(self) -> bool:
        return self.lo == self.hi

    def require_at_least(self, lo: int) -> None:
        """Tighten the lower bound at wiring time (e.g. a softmax axis needs size >= 2)."""
        if lo > self.hi:
            raise ValueError(f"{self.name}: cannot require >= {lo}, upper bound is {self.hi}")
        self.lo = max(self.lo, lo)
        if self.hint is not None:
            self.hint = max(self.hint, self.lo)

    def __repr__(self) -> str:
        return f"Var({self.name}, {self.lo}..{self.hi})"


@dataclass(eq=False)
class Tensor:
    """A tensor of the program: graph input, operator output or reshape view."""

    name: str
    dims: tuple[Var, ...]
    is_index: bool = False  # int64 values (ArgMax / ArgMin)
    is_weight: bool = False  # a parameter owned by one operator (conv weights and biases, matmul rhs)
    is_input: bool = False  # a graph input (randn or a weight), not computed
    # A weight's init: the Vars whose product is its fan-in as torch.nn counts it (uniform in
    # +-1/sqrt(fan_in); a bias names its weight's), or None: standard normal (torch.randn).
    fan_in: tuple[Var, ...] | None = None
    # Every tensor holds at least MIN_NUMEL elements, but a bias is one value per channel:
    # a floor on it would be a floor on the channel count.
    min_numel: int = MIN_NUMEL
    is_view: bool = False  # shares storage with its source (reshape), costs no bytes
    facts: frozenset[str] = frozenset()  # value facts (see VALUE_FACTS), for wiring
    consumers: list[Any] = field(default_factory=list)

    @property
    def rank(self) -> int:
        return len(self.dims)

    def free_axes(self) -> list[int]:
        """Axes whose size is not pinned to 1 (a keepdim reduction pins its axis)."""
        return [i for i, d in enumerate(self.dims) if d.hi > 1]


@dataclass(frozen=True)
class Term:
    """coef * product(factors): one monomial of a FLOPs formula."""

    coef: int
    factors: tuple[Var, ...]

    def value(self, values: dict[Var, int]) -> int:
        return self.coef * math.prod(values[v] for v in self.factors)


def numel_term(dims: tuple[Var, ...] | list[Var], coef: int = 1) -> Term:
    return Term(coef, tuple(dims))
