"""Wiring's rank adapter: the Reshape node `graph.wire` inserts where no produced tensor has
a rank the next operator takes. Not a registered operator (never drawn, not in the
catalogue), but a node like the others: it is solved, rendered and counted (0 FLOPs)."""
from __future__ import annotations

from generator_core.ops.base import Plan
from generator_core.ops.layout import Layout


class Reshape(Layout):
    """Wiring glue, not one of the catalogue's operators: bridges ranks between two
    operators (a Conv1d output feeding a Conv3d), keeping the number of elements.

    It splits an axis in two (d = a*c) or merges the last two (m = a*b), keeping every
    other axis as the same Var: one small product per step, where equating the numel of
    two unrelated shapes costs CP-SAT a factorisation search (measured: the slowest
    models were those with such reshapes)."""

    name = "Reshape"
    is_adapter = True
    keeps_facts = True

    def plan_to_rank(self, b, x, rank: int, fresh: bool = False) -> Plan:
        """Split / merge axes; with `fresh`, a wholly new shape of the same numel (for an
        operator that needs axes the kept ones pin, e.g. GroupNorm's channels)."""
        if fresh:
            dims = b.fresh_dims(rank)
            return Plan(inputs=[x], out_dims=dims, params={"_factors": [(None, (x.dims, dims))]})
        dims, factors = list(x.dims), []
        while len(dims) < rank:
            axis = max(range(len(dims)), key=lambda i: (not dims[i].fixed, -i))
            a, c = b.dim(), b.dim()
            factors.append((dims[axis], (a, c)))
            dims[axis:axis + 1] = [a, c]
        while len(dims) > rank:
            merged = b.derived_dim()
            factors.append((merged, (dims[-2], dims[-1])))
            dims[-2:] = [merged]
        return Plan(inputs=[x], out_dims=tuple(dims), params={"_factors": factors})

    def constrain(self, node, m):
        for whole, parts in node.params["_factors"]:
            if whole is None:  # a fresh shape: equal numel
                m.add(m.product(list(parts[0])) == m.product(list(parts[1])))
            else:
                m.add(m.v(whole) == m.product(list(parts)))

    def render(self, r):
        return f"{r.args[0]}.reshape({r.out_shape})"


RESHAPE = Reshape()
