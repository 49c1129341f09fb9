"""Data movement: no arithmetic, so 0 FLOPs (wiring's reshape adapter is generator_core/rank_adapter.py)."""
from __future__ import annotations

from typing import ClassVar

from generator_core.ops.base import Operator, Plan, register


class Layout(Operator):
    family = "layout"
    flops_formula = "0 (data movement)"
    flops_per_element = 0

    def flops(self, node):
        return []


@register
class Transpose(Layout):
    description = "Transpose: swaps two drawn axes (torch.transpose)"
    keeps_facts = True
    input_ranks = (2, 3, 4, 5)

    def plan(self, b, x, want_ranks):
        dim0, dim1 = sorted(b.rng.sample(range(x.rank), 2))
        dims = list(x.dims)
        dims[dim0], dims[dim1] = dims[dim1], dims[dim0]
        return Plan(inputs=[x], out_dims=tuple(dims), params={"dim0": dim0, "dim1": dim1})

    def render(self, r):
        return f"torch.transpose({r.args[0]}, {r.params['dim0']}, {r.params['dim1']})"


class Triangle(Layout):
    """Triu / Tril: keeps the `side` triangle of the last two axes from a solved diagonal on,
    zeroing the rest; the operator's name, function and description follow from `side`."""

    keeps_facts = True
    input_ranks = (2, 3, 4, 5)
    side: ClassVar[str]  # "upper" (torch.triu) or "lower" (torch.tril)

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.fn = {"upper": "triu", "lower": "tril"}[cls.side]
        zeroed = "below" if cls.side == "upper" else "above"
        cls.description = (f"{cls.__name__}: zeroes the elements {zeroed} the chosen diagonal of the last two axes; "
                           f"diagonal is solved (torch.{cls.fn})")
        cls.makes_facts = frozenset({"sparse", cls.side})  # the zeroed triangle: a min or an argmin ties at 0
        cls.pointless_on = frozenset({cls.side})

    def accepts(self, x):
        # A matrix with one row or one column has no triangle to zero (a copy of the input).
        return x.rank in self.input_ranks and x.dims[-1].hi > 1 and x.dims[-2].hi > 1

    def plan(self, b, x, want_ranks):
        hint = b.rng.choice([0, 0, 0, 1, -1, 2, -2])
        return Plan(inputs=[x], out_dims=x.dims, params={"diagonal": b.param("diagonal", -8, 8, hint)})

    def constrain(self, node, m):
        # Keep at least one element of every matrix and zero at least one, or the operator
        # copies its input: triu needs 2 - rows <= diagonal <= columns - 1, tril
        # 1 - rows <= diagonal <= columns - 2.
        rows, cols = node.inputs[0].dims[-2:]
        diagonal = m.v(node.params["diagonal"])
        if self.side == "upper":
            m.add(diagonal <= m.v(cols) - 1)
            m.add(diagonal >= 2 - m.v(rows))
        else:
            m.add(diagonal >= 1 - m.v(rows))
            m.add(diagonal <= m.v(cols) - 2)

    def render(self, r):
        return f"torch.{self.fn}({r.args[0]}, diagonal={r.params['diagonal']})"


@register
class Triu(Triangle):
    side = "upper"


@register
class Tril(Triangle):
    side = "lower"


@register
class Cat(Layout):
    description = ("Cat: concatenates the input with a second tensor along a drawn axis; the second tensor's "
                   "length there is solved (torch.cat)")
    arity = 2

    def plan(self, b, x, want_ranks):
        axis = b.rng.randrange(x.rank)
        dims = list(x.dims)
        dims[axis] = b.dim()
        other = b.partner(x, tuple(dims), free_axis=axis)
        dims[axis] = b.derived_dim()
        return Plan(inputs=[x, other], out_dims=tuple(dims), params={"dim": axis})

    def constrain(self, node, m):
        axis = node.params["dim"]
        a, c = node.inputs
        m.add(m.v(node.output.dims[axis]) == m.v(a.dims[axis]) + m.v(c.dims[axis]))

    def render(self, r):
        return f"torch.cat([{r.args[0]}, {r.args[1]}], dim={r.params['dim']})"


@register
class Stack(Layout):
    description = "Stack: stacks the input and a second tensor of its shape along a new drawn axis (torch.stack)"
    arity = 2
    input_ranks = (1, 2, 3, 4)

    def output_ranks(self, rank):
        return {rank + 1}

    def plan(self, b, x, want_ranks):
        axis = b.rng.randint(0, x.rank)
        dims = list(x.dims)
        dims.insert(axis, b.fixed(2))
        return Plan(inputs=[x, b.partner(x, x.dims)], out_dims=tuple(dims), params={"dim": axis})

    def render(self, r):
        return f"torch.stack([{r.args[0]}, {r.args[1]}], dim={r.params['dim']})"
