"""Unary activations and elementwise math: output shape = input shape."""
from __future__ import annotations

import math
from typing import ClassVar

from generator_core.ops.base import F, Operator, Plan, RenderContext, choose_axis, register

# Largest exponent Exp2 may see, per dtype: keeps 2**x and what follows it (Var squares it)
# finite. float16 tops out at 65504, float32 / bfloat16 at ~3.4e38.
EXP2_LIMIT = {"torch.float16": 6.0, "torch.bfloat16": 16.0, "torch.float32": 16.0}
# The same bounds for Exp, in its base: e**x <= 2**EXP2_LIMIT.
EXP_LIMIT = {dtype: round(limit * math.log(2), 2) for dtype, limit in EXP2_LIMIT.items()}


class Unary(Operator):
    family = "activation"
    call: ClassVar[str]  # a format string over {x} and the node's params

    def plan(self, b, x, want_ranks):
        return Plan(inputs=[x], out_dims=x.dims, params=self.draw_params(b.rng))

    def draw_params(self, rng) -> dict:
        return {}

    def render(self, r: RenderContext) -> str:
        return self.call.format(x=r.args[0], **r.params)


@register
class ReLU(Unary):
    description = "ReLU: max(x, 0), elementwise (torch.relu)"
    collapses_on = frozenset({"nonpositive"})
    pointless_on = frozenset({"nonnegative", "extreme", "keeps_positive"})  # relu(leaky_relu(x)) = relu(x)
    makes_facts = frozenset({"sparse", "nonnegative"})
    call = "torch.relu({x})"


@register
class LeakyReLU(Unary):
    description = ("LeakyReLU: x where x > 0, else negative_slope * x, elementwise; slope drawn from 0.01 to 0.2 "
                   "(F.leaky_relu)")
    keeps_facts = True  # monotone through 0: inputs <= 0 stay <= 0
    pointless_on = frozenset({"nonnegative", "extreme"})  # one sign: a scale, or unchanged
    makes_facts = frozenset({"increasing", "keeps_positive"})
    flops_per_element = 2
    call = F + ".leaky_relu({x}, negative_slope={negative_slope})"

    def draw_params(self, rng):
        return {"negative_slope": rng.choice([0.01, 0.05, 0.1, 0.2])}


@register
class Sigmoid(Unary):
    description = "Sigmoid: 1 / (1 + exp(-x)), elementwise (torch.sigmoid)"
    collapses_on = frozenset({"saturating"})
    makes_facts = frozenset({"nonnegative", "increasing"})
    flops_per_element = 3  # exp, add, reciprocal
    call = "torch.sigmoid({x})"


class Squash(Unary):
    """An odd, increasing S-curve into (-1, 1): flat, and so constant, over saturating inputs."""

    collapses_on = frozenset({"saturating"})
    makes_facts = frozenset({"increasing"})
    keeps_facts = True  # monotone through 0: inputs <= 0 stay <= 0


@register
class Tanh(Squash):
    description = "Tanh: the hyperbolic tangent of x, elementwise (torch.tanh)"
    call = "torch.tanh({x})"


@register
class Swish(Unary):
    description = "Swish: x * sigmoid(x) (SiLU), elementwise (F.silu)"
    keeps_facts = True  # monotone through 0: inputs <= 0 stay <= 0
    flops_per_element = 4  # x * sigmoid(x)
    call = F + ".silu({x})"


@register
class GELU(Unary):
    description = "GELU: x * Phi(x), Phi the standard normal CDF, elementwise (F.gelu)"
    keeps_facts = True  # monotone through 0: inputs <= 0 stay <= 0
    flops_per_element = 4  # x * 0.5 * (1 + erf(x / sqrt 2))
    call = F + ".gelu({x})"


@register
class SELU(Unary):
    description = ("SELU: scale * (x where x > 0, else alpha * (exp(x) - 1)) with the fixed self-normalising "
                   "constants, elementwise (F.selu)")
    keeps_facts = True  # monotone through 0: inputs <= 0 stay <= 0
    makes_facts = frozenset({"increasing"})
    flops_per_element = 4
    call = F + ".selu({x})"


@register
class Hardsigmoid(Unary):
    description = "Hardsigmoid: clamp(x / 6 + 0.5, 0, 1), elementwise (F.hardsigmoid)"
    collapses_on = frozenset({"nonpositive", "concentrated", "discrete", "saturating"})
    makes_facts = frozenset({"nonnegative", "clipped"})
    flops_per_element = 3
    call = F + ".hardsigmoid({x})"


@register
class Softplus(Unary):
    description = "Softplus: log(1 + exp(x)), elementwise (F.softplus)"
    makes_facts = frozenset({"nonnegative", "increasing"})
    flops_per_element = 3  # log(1 + exp(x))
    call = F + ".softplus({x})"


@register
class Softsign(Squash):
    description = "Softsign: x / (1 + |x|), elementwise (F.softsign)"
    flops_per_element = 3  # x / (1 + |x|)
    call = F + ".softsign({x})"


@register
class ELU(Unary):
    description = "ELU: x where x > 0, else alpha * (exp(x) - 1), elementwise; alpha drawn from 0.5, 1.0, 1.5 (F.elu)"
    keeps_facts = True  # monotone through 0: inputs <= 0 stay <= 0
    pointless_on = frozenset({"nonnegative"})
    makes_facts = frozenset({"increasing", "keeps_positive"})
    flops_per_element = 3
    call = F + ".elu({x}, alpha={alpha})"

    def draw_params(self, rng):
        return {"alpha": rng.choice([0.5, 1.0, 1.5])}


class Clip(Unary):
    """x clipped to two bounds, each drawn from a few values."""

    keeps_facts = True  # monotone through 0: inputs <= 0 stay <= 0
    makes_facts = frozenset({"clipped"})
    collapses_on = frozenset({"nonpositive", "concentrated", "discrete", "saturating", "extreme"})
    flops_per_element = 2
    bounds: ClassVar[dict[str, list[float]]]  # each bound's parameter name: the values it is drawn from

    def draw_params(self, rng):
        return {name: rng.choice(values) for name, values in self.bounds.items()}


@register
class HardTanh(Clip):
    description = ("HardTanh: x clipped to [min_val, max_val], elementwise; min_val drawn from -2 to -0.5, max_val "
                   "from 0.5 to 2 (F.hardtanh)")
    bounds = {"min_val": [-2.0, -1.0, -0.5], "max_val": [0.5, 1.0, 2.0]}
    call = F + ".hardtanh({x}, min_val={min_val}, max_val={max_val})"


@register
class LogSigmoid(Unary):
    description = "LogSigmoid: log(sigmoid(x)), elementwise (F.logsigmoid)"
    flops_per_element = 4
    makes_facts = frozenset({"nonpositive", "increasing"})
    call = F + ".logsigmoid({x})"


@register
class Clamp(Clip):
    description = ("Clamp: x clipped to [min, max], elementwise; min drawn from -1 to -0.25, max from 0.25 to 1 "
                   "(torch.clamp)")
    bounds = {"min": [-1.0, -0.5, -0.25], "max": [0.25, 0.5, 1.0]}
    call = "torch.clamp({x}, min={min}, max={max})"


@register
class Abs(Unary):
    description = "Abs: |x|, elementwise (torch.abs)"
    pointless_on = frozenset({"nonnegative", "absolute"})
    makes_facts = frozenset({"nonnegative", "absolute"})
    call = "torch.abs({x})"


@register
class Cos(Unary):
    description = "Cos: cos(x), elementwise (torch.cos)"
    pointless_on = frozenset({"absolute"})  # even: cos(|x|) = cos(x)
    call = "torch.cos({x})"


@register
class Sin(Unary):
    description = "Sin: sin(x), elementwise (torch.sin)"
    call = "torch.sin({x})"


class ClampedExp(Unary):
    """An exponential of x clamped from above, so that the result stays finite in the dtype:
    after a Matmul or CumSum, inputs reach the hundreds, and 2**x or e**x would overflow."""

    makes_facts = frozenset({"nonnegative", "increasing"})
    flops_per_element = 2  # clamp, exp
    function: ClassVar[str]
    limits: ClassVar[dict[str, float]]  # the clamp's bound, per dtype

    def render(self, r):
        return f"{self.function}(torch.clamp({r.args[0]}, max={self.limits[r.dtype]}))"


@register
class Exp2(ClampedExp):
    description = ("Exp2: 2**x, elementwise, x clamped from above so that the result stays finite in the dtype "
                   "(torch.exp2)")
    function, limits = "torch.exp2", EXP2_LIMIT


@register
class Exp(ClampedExp):
    description = ("Exp: e**x, elementwise, x clamped from above so that the result stays finite in the dtype "
                   "(torch.exp)")
    function, limits = "torch.exp", EXP_LIMIT


@register
class Square(Unary):
    description = "Square: x * x, elementwise (torch.square)"
    pointless_on = frozenset({"absolute"})  # even: square(|x|) = square(x)
    makes_facts = frozenset({"nonnegative"})
    call = "torch.square({x})"


class EvenGuarded(Unary):
    """A function of |x|: defined for every input (no NaN from negatives), even in x."""

    pointless_on = frozenset({"absolute"})  # f(|x|) of an Abs output repeats the Abs
    makes_facts = frozenset({"nonnegative"})
    flops_per_element = 3


@register
class Log(EvenGuarded):
    description = "Log: log(|x| + 1), elementwise: the guard keeps every value finite and >= 0 (torch.log)"
    call = "torch.log(torch.abs({x}) + 1.0)"


@register
class Sqrt(EvenGuarded):
    description = "Sqrt: sqrt(|x|), elementwise: the absolute value keeps negative inputs defined (torch.sqrt)"
    flops_per_element = 2
    call = "torch.sqrt(torch.abs({x}))"


@register
class Mish(Unary):
    description = "Mish: x * tanh(softplus(x)), elementwise (F.mish)"
    keeps_facts = True  # inputs <= 0 stay <= 0
    flops_per_element = 5  # exp, log1p, tanh, multiply (softplus, then tanh of it)
    call = F + ".mish({x})"


@register
class HardSwish(Unary):
    description = "HardSwish: x * clamp(x + 3, 0, 6) / 6, elementwise (F.hardswish)"
    keeps_facts = True  # inputs <= 0 stay <= 0
    collapses_on = frozenset({"saturating"})  # large negative inputs all give 0
    flops_per_element = 4
    call = F + ".hardswish({x})"


@register
class GELUTanh(Unary):
    description = ("GELUTanh: the tanh approximation of GELU, 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 "
                   "* x**3))), elementwise (F.gelu with approximate='tanh')")
    keeps_facts = True  # inputs <= 0 stay <= 0
    flops_per_element = 7  # cube, multiply-add, scale, tanh, add, two multiplies
    call = F + ".gelu({x}, approximate='tanh')"


class AxisUnary(Unary):
    """Softmax-like: normalises along one axis of at least two elements."""

    flops_per_element = 5  # max, subtract, exp, sum, divide (or log)

    def accepts(self, x):
        return super().accepts(x) and bool(x.free_axes())

    def plan(self, b, x, want_ranks):
        return Plan(inputs=[x], out_dims=x.dims, params={"dim": choose_axis(b, x)})


@register
class Softmax(AxisUnary):
    description = "Softmax: exp(x) / sum(exp(x)) along one drawn axis of at least 2 elements (torch.softmax)"
    makes_facts = frozenset({"nonnegative"})
    call = "torch.softmax({x}, dim={dim})"


@register
class LogSoftmax(AxisUnary):
    description = "LogSoftmax: x - log(sum(exp(x))) along one drawn axis of at least 2 elements (torch.log_softmax)"
    makes_facts = frozenset({"nonpositive", "concentrated"})
    call = "torch.log_softmax({x}, dim={dim})"


@register
class Softmin(AxisUnary):
    description = "Softmin: exp(-x) / sum(exp(-x)) along one drawn axis of at least 2 elements (F.softmin)"
    makes_facts = frozenset({"nonnegative"})
    call = F + ".softmin({x}, dim={dim})"
