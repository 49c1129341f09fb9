"""Cumulative scans along one axis."""
from __future__ import annotations

from generator_core.ops.base import Operator, Plan, register


class Scan(Operator):
    family = "scan"
    flops_formula = "flops_per_element * input numel"
    keeps_facts = True
    call: str

    def plan(self, b, x, want_ranks):
        free = x.free_axes() or list(range(x.rank))
        return Plan(inputs=[x], out_dims=x.dims, params={"dim": b.rng.choice(free)})

    def render(self, r):
        return self.call.format(x=r.args[0], **r.params)


@register
class CumSum(Scan):
    call = "torch.cumsum({x}, dim={dim})"


@register
class CumMax(Scan):
    extreme_of_large = True
    makes_facts = frozenset({"monotone"})
    call = "torch.cummax({x}, dim={dim}).values"


@register
class CumMin(Scan):
    extreme_of_large = True
    makes_facts = frozenset({"monotone"})
    call = "torch.cummin({x}, dim={dim}).values"
