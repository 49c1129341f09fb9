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


@register
class CumProd(Scan):
    description = ("CumProd: the running product along one drawn axis of n elements of 1 + x / (2 * sqrt(n)) "
                   "(torch.cumprod); in float16 / bfloat16 the factors and the product are computed in float32, "
                   "then cast back")
    # Not torch.cumprod(x) as KernelBench 90 has it: the running product of randn values
    # shrinks geometrically (E log|x| = -0.64 per element), so after a few dozen elements every
    # value is about 0 and zeros pass. The factors 1 + x / (2 sqrt(n)) keep it informative along
    # any length: for zero-mean, unit-scale x, log of the product at step k is about
    # N(-k / 8n, k / 4n), within e**+-1.5 over the whole axis. Why 2 sqrt(n), not sqrt(n): in
    # bfloat16 the rounding errors of computed x add up along the product, about
    # sqrt(k / n) * scale ulps; at 1 / sqrt(n) GELU or LayerNorm outputs of 2**16 elements
    # were 1.0-1.4x the tolerance from float64 (2 of 4 indices redone), at half of it 0.7-1.04x.
    flops_per_element = 3  # divide, add, multiply (the constant 2 * sqrt(n) is folded)
    keeps_facts = False  # a product is neither of x's sign nor sorted like it
    # One-sign inputs drift by their mean times sqrt(n): ReLU / Exp / Sigmoid outputs overflow,
    # Softmax's tiny values give a product of about 1 (constant), ArgMax indices and Var / Norm
    # outputs (nonnegative) and running maxima overflow as well.
    collapses_on = frozenset({"nonnegative", "nonpositive", "extreme", "saturating", "monotone"})

    def render(self, r):
        x, dim = r.args[0], r.params["dim"]
        n = r.in_shapes[0][dim]
        if r.dtype == "torch.float32":
            return f"torch.cumprod(1.0 + {x} / (2 * {n} ** 0.5), dim={dim})"
        # In a half type each factor 1 + eps rounds to 8 (11) bits, and n roundings of the
        # product drift far from float64 (bfloat16: 2x the tolerance at n = 16, 40x at 4096).
        # Replayed in float64, .float() makes the truth float32: far within a half type's tolerance.
        return f"torch.cumprod(1.0 + {x}.float() / (2 * {n} ** 0.5), dim={dim}).to({x}.dtype)"


# A mask partner of one of these has (m > 0) all true or all false: a plain or a zero cumsum.
CONSTANT_MASK_FACTS = frozenset({"nonpositive", "extreme", "saturating", "concentrated"})


@register
class MaskedCumSum(Scan):
    description = ("MaskedCumSum: the running sum along one drawn axis of x where a second tensor of x's shape is "
                   "positive, 0 elsewhere: torch.cumsum of x times the boolean mask torch.gt(m, 0) (torch.cumsum)")
    arity = 2
    flops_per_element = 3  # compare, multiply, add

    def plan(self, b, x, want_ranks):
        dim = choose_axis(b, x)
        m = b.partner(x, x.dims)
        # x's own input as the mask makes the op that made x removable where it keeps the
        # positive values (relu(m) * (m > 0) is m * (m > 0); Abs, LeakyReLU and ELU alike).
        made_from = [t for node in b.graph.nodes if node.output is x for t in node.inputs]
        if (any(m is t for t in made_from) or m.facts & CONSTANT_MASK_FACTS
                or ("nonnegative" in m.facts and "sparse" not in m.facts)):
            m = b.fresh_input(x.dims)  # ReLU outputs (sparse) mask about half; Softmax's, all
        return Plan(inputs=[x, m], out_dims=x.dims, params={"dim": dim})

    def render(self, r):
        # torch.gt, not `>`: a rendered program holds calls and arithmetic only (no comparisons;
        # tests/security/test_client_text.py checks its syntax).
        return f"torch.cumsum({r.args[0]} * torch.gt({r.args[1]}, 0), dim={r.params['dim']})"
