"""Cumulative scans along one axis."""
from __future__ import annotations

from generator_core.ops.base import Operator, Plan, register


class Scan(Operator):
    family = "scan"
    keeps_sign = True
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
    call = "torch.cummax({x}, dim={dim}).values"


@register
class CumMin(Scan):
    call = "torch.cummin({x}, dim={dim}).values"
