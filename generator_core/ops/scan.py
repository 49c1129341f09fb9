"""Cumulative scans along one axis."""
from __future__ import annotations

from generator_core.ops.base import InputCosted, Plan, choose_axis, register


# cummax / cummin scan with indices; over the innermost axis PyTorch's CUDA kernel gives
# each row 64 slots whatever its length, so many short rows crawl (measured on an H100: 3.3 s
# for 335M rows of 3). Such a scan runs along at least this many elements.
MIN_INNERMOST_SCAN = 32


class Scan(InputCosted):
    family = "scan"
    keeps_facts = True
    call: str
    with_indices = False

    def accepts(self, x):
        return x.rank in self.input_ranks and bool(x.free_axes())

    def plan(self, b, x, want_ranks):
        # A scan over one element copies its input.
        return Plan(inputs=[x], out_dims=x.dims, params={"dim": choose_axis(b, x)})

    def constrain(self, node, m):
        x, dim = node.inputs[0], node.params["dim"]
        if self.with_indices and dim == x.rank - 1:
            m.add(m.v(x.dims[dim]) >= MIN_INNERMOST_SCAN)

    def render(self, r):
        return self.call.format(x=r.args[0], **r.params)


@register
class CumSum(Scan):
    description = "CumSum: the running sum along one drawn axis (torch.cumsum)"
    call = "torch.cumsum({x}, dim={dim})"


@register
class CumSumReverse(Scan):
    description = ("CumSumReverse: the running sum from the end of one drawn axis (torch.cumsum of the flipped "
                   "tensor, flipped back)")
    call = "torch.cumsum({x}.flip({dim}), dim={dim}).flip({dim})"


@register
class CumSumExclusive(Scan):
    description = ("CumSumExclusive: the running sum along one drawn axis of the elements before each one (0 "
                   "first): torch.cumsum of all but the last, after a slice of zeros (torch.cat)")

    def render(self, r):
        # Not cumsum(x) - x: in half types that difference cancels (measured: bfloat16
        # samples 1.4-2x the tolerance from float64).
        x, dim, n = r.args[0], r.params["dim"], r.in_shapes[0][r.params["dim"]]
        return (f"torch.cat([torch.zeros_like({x}.narrow({dim}, 0, 1)), "
                f"torch.cumsum({x}.narrow({dim}, 0, {n - 1}), dim={dim})], dim={dim})")


class CumExtremum(Scan):
    """A running maximum or minimum: a scan with indices, of which the values are kept."""

    with_indices = True
    extreme_of_large = True
    makes_facts = frozenset({"monotone"})


@register
class CumMax(CumExtremum):
    description = "CumMax: the running maximum along one drawn axis, its values (torch.cummax(...).values)"
    call = "torch.cummax({x}, dim={dim}).values"


@register
class CumMin(CumExtremum):
    description = "CumMin: the running minimum along one drawn axis, its values (torch.cummin(...).values)"
    call = "torch.cummin({x}, dim={dim}).values"
