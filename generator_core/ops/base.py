"""The operator contract and the registry.

An operator is one small class: how it wires (`input_ranks`, `accepts`, `plan`), what it
asks of the solver (`constrain`), what it costs (`flops`) and how it reads in PyTorch
(`render`). Family bases (elementwise.py, reduction.py, ...) supply the defaults, so most
operators are a few class attributes. `@register` puts one instance in `OPERATORS`.

FLOPs conventions (the one table; docs/operators.md repeats it with every operator):
- matmul-like (Matmul, Bmm, Linear): 2*M*N*K per batch element (Linear's bias add is not
  counted: FlopCounterMode's count of aten.addmm leaves it out).
- Conv{1,2,3}d: 2 * output numel * Cin/groups * kernel volume (a bias add is not counted,
  as FlopCounterMode does not count it, here or for transposed convolutions).
- ConvTranspose{1,2,3}d: the dense work, 2 * input numel * Cout/groups * kernel volume.
- Pools: output numel * kernel volume (one add or compare per window element).
- Elementwise and activations: `flops_per_element` * output numel (transcendentals count 1).
- Reductions, scans and norms: `flops_per_element` * input numel.
- Data movement (Transpose, Triu, Tril, Cat, Stack and the reshape adapter): 0.
These agree with torch.utils.flop_counter.FlopCounterMode wherever it counts an operator
(matmul, bmm, linear, convolution, transposed convolution); tests check that.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from generator_core.symbolic import Term, Tensor, Var, numel_term

if TYPE_CHECKING:  # only for annotations: ops never import the graph or the solver
    from generator_core.graph import Builder, Node
    from generator_core.solve import ShapeModel

ALL_RANKS = (1, 2, 3, 4, 5)


@dataclass
class Plan:
    """What `Operator.plan` decides at wiring time."""

    inputs: list[Tensor]  # the data input first, then partners and parameters (weights, biases)
    out_dims: tuple[Var, ...]
    params: dict[str, Any] = field(default_factory=dict)  # ints/floats/bools or Vars
    is_index: bool = False


@dataclass
class RenderContext:
    """Concrete view of a solved node, handed to `Operator.render`."""

    args: list[str]  # names of the input tensors, in `Plan.inputs` order
    params: dict[str, Any]  # every Var replaced by its solved value
    in_shapes: list[list[int]]
    out_shape: list[int]
    dtype: str  # e.g. "torch.float32"
    consumed: bool  # does another operator read this node's output?


class Operator:
    name: ClassVar[str]
    family: ClassVar[str]
    arity: ClassVar[int] = 1  # most tensors it reads, parameters (a conv's weight and bias) included
    input_ranks: ClassVar[tuple[int, ...]] = ALL_RANKS
    flops_per_element: ClassVar[int] = 1
    flops_formula: ClassVar[str] = "flops_per_element * output numel"  # for the catalogue
    # Upper bound of FLOPs per element of the largest tensor it touches; with max_tensor_numel
    # it bounds what the operator can contribute, so op draws can avoid hopeless windows.
    flops_per_element_bound: ClassVar[int] = 0
    description: ClassVar[str] = ""
    # Value facts (symbolic.VALUE_FACTS), for wiring to avoid degenerate programs:
    makes_facts: ClassVar[frozenset[str]] = frozenset()  # facts true of every output
    keeps_facts: ClassVar[bool] = False  # outputs inherit the input's facts (monotone maps)
    collapses_on: ClassVar[frozenset[str]] = frozenset()  # inputs it would make constant
    # Inputs on which this operator, or the one that made them, changes nothing (Abs of
    # Abs, Cos of Abs): a node a grader's task would not need.
    pointless_on: ClassVar[frozenset[str]] = frozenset()
    index_output: ClassVar[bool] = False  # int64 indices (ArgMax, ArgMin)
    extreme_of_large: ClassVar[bool] = False  # max/min-like: "large" inputs give "saturating"
    # Wiring's rank adapter (rank_adapter.Reshape), which no one draws: its output is a view.
    is_adapter: ClassVar[bool] = False

    # -- wiring -------------------------------------------------------------------------
    def accepts(self, x: Tensor) -> bool:
        """Can `x` be the first input? Ranks, and axes that must not be pinned to 1."""
        return x.rank in self.input_ranks

    def output_ranks(self, rank: int) -> set[int]:
        """Ranks the output may take for an input of `rank` (lets wiring avoid adapters)."""
        return {rank}

    def plan(self, b: Builder, x: Tensor, want_ranks: set[int] | None) -> Plan:
        return Plan(inputs=[x], out_dims=x.dims)

    # -- solving ------------------------------------------------------------------------
    def constrain(self, node: Node, m: ShapeModel) -> None:
        """Add CP-SAT constraints over the node's Vars (none for shape-preserving ops)."""

    def flops(self, node: Node) -> list[Term]:
        return [numel_term(node.output.dims, self.flops_per_element)]

    def min_flops(self) -> int:
        """FLOPs of the smallest instance (every tensor at the minimum numel)."""
        return 32 * self.flops_per_element

    def max_flops(self, max_tensor_numel: int) -> int:
        return max(self.flops_per_element_bound, self.flops_per_element) * max_tensor_numel

    # -- rendering ----------------------------------------------------------------------
    def render(self, r: RenderContext) -> str:
        raise NotImplementedError

    def catalogue_entry(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "category": self.family,
            "arity": self.arity,
            "input_ranks": list(self.input_ranks),
            "flops_per_element": self.flops_per_element,
            "flops": self.flops_formula.replace("flops_per_element", str(self.flops_per_element)),
            "description": self.description,
        }


class InputCosted(Operator):
    """An operator whose work is per element it reads (reductions, norms, scans), not per
    element it writes."""

    flops_formula = "flops_per_element * input numel"

    def flops(self, node: Node) -> list[Term]:
        return [numel_term(node.inputs[0].dims, self.flops_per_element)]


OPERATORS: dict[str, Operator] = {}


def register(cls: type[Operator]) -> type[Operator]:
    """Class decorator: one instance per operator, keyed by its stable name."""
    name = cls.__dict__.get("name") or cls.__name__
    cls.name = name
    if name in OPERATORS:
        raise ValueError(f"operator {name!r} registered twice")
    OPERATORS[name] = cls()
    return cls


# -- helpers shared by the families ---------------------------------------------------------
F = "torch.nn.functional"


def choose_axis(b: Builder, x: Tensor, min_size: int = 2, axes: list[int] | None = None) -> int:
    """A random axis of `x` that is not pinned to 1, required to have at least `min_size`
    elements (a softmax over one element is constant; a variance over one is NaN)."""
    candidates = [a for a in (axes if axes is not None else range(x.rank)) if x.dims[a].hi > 1]
    axis = b.rng.choice(candidates)
    x.dims[axis].require_at_least(min_size)
    return axis


def reduce_axis(b: Builder, x: Tensor, axis: int, want_ranks: set[int] | None,
                keeps: tuple[bool, ...] = (False, True)) -> tuple[bool, tuple[Var, ...]]:
    """(keepdim, output dims) of reducing `axis` of `x`: keepdim drawn among `keeps`,
    preferring an output rank the next operator takes; a kept axis is pinned to 1."""
    options = [k for k in keeps if not want_ranks or (x.rank if k else x.rank - 1) in want_ranks]
    keepdim = b.rng.choice(options or list(keeps))
    dims = list(x.dims)
    if keepdim:
        dims[axis] = b.fixed(1)
    else:
        del dims[axis]
    return keepdim, tuple(dims)


def has_free_axis(x: Tensor, axes: range | list[int]) -> bool:
    return any(x.dims[a].hi > 1 for a in axes)


def unpinned(x: Tensor, axes: range | list[int]) -> bool:
    """None of these axes is pinned to one size (a keepdim 1, a stacked 2). Heavy operators
    want this: a matmul whose K is pinned to 1 cannot reach a large FLOPs window."""
    return all(not x.dims[a].fixed for a in axes)
