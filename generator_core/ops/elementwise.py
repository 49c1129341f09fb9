"""Elementwise operators: two inputs of one shape (the same dimension Vars), or one input and
a drawn constant."""
from __future__ import annotations

from typing import ClassVar

from generator_core.ops.base import Operator, Plan, RenderContext, register


class Binary(Operator):
    family = "elementwise"
    arity = 2
    call: ClassVar[str]  # a format string over {a}, {b} and the node's params

    def plan(self, builder, x, want_ranks):  # not `b`, which names the second operand in `call`
        return Plan(inputs=[x, builder.partner(x, x.dims)], out_dims=x.dims, params=self.draw_params(builder.rng))

    def draw_params(self, rng) -> dict:
        return {}

    def render(self, r: RenderContext) -> str:
        return self.call.format(a=r.args[0], b=r.args[1], **r.params)


@register
class Add(Binary):
    description = "Add: a + b, elementwise over two tensors of one shape (torch.add)"
    call = "torch.add({a}, {b})"


@register
class Sub(Binary):
    description = "Sub: a - b, elementwise over two tensors of one shape (torch.sub)"
    call = "torch.sub({a}, {b})"


@register
class Mul(Binary):
    description = "Mul: a * b, elementwise over two tensors of one shape (torch.mul)"
    call = "torch.mul({a}, {b})"


@register
class Div(Binary):
    description = "Div: a / (|b| + 1), elementwise: the guarded denominator keeps every quotient finite (torch.div)"
    # Why the guard: the denominator may be a ReLU output, an ArgMax index or an fp16 randn
    # that rounded to 0; |b| + 1 keeps it >= 1 so the quotient is always finite.
    flops_per_element = 3
    call = "torch.div({a}, torch.abs({b}) + 1.0)"


@register
class Maximum(Binary):
    description = "Maximum: the larger of a and b, elementwise (torch.maximum)"
    call = "torch.maximum({a}, {b})"


@register
class Minimum(Binary):
    description = "Minimum: the smaller of a and b, elementwise (torch.minimum)"
    call = "torch.minimum({a}, {b})"


@register
class Lerp(Binary):
    description = "Lerp: a + weight * (b - a), elementwise; weight drawn from 0.1 to 0.9 (torch.lerp)"
    flops_per_element = 3  # a + w * (b - a)
    call = "torch.lerp({a}, {b}, {weight})"

    def draw_params(self, rng):
        return {"weight": rng.choice([0.1, 0.25, 0.5, 0.75, 0.9])}


class Scalar(Operator):
    """One tensor and a drawn constant, as KernelBench's `x * self.scaling_factor`. The
    constants are positive where the map must keep the order of its input."""

    family = "elementwise"
    makes_facts = frozenset({"increasing"})
    call: ClassVar[str]  # a format string over {x} and {c}
    constants: ClassVar[tuple[float, ...]]

    def plan(self, builder, x, want_ranks):
        return Plan(inputs=[x], out_dims=x.dims, params={"c": builder.rng.choice(self.constants)})

    def render(self, r: RenderContext) -> str:
        return self.call.format(x=r.args[0], **r.params)


class PositiveScalar(Scalar):
    """A positive scale or divisor: signs, order and ties stay."""

    keeps_facts = True


@register
class MulScalar(PositiveScalar):
    description = "MulScalar: x * c, elementwise, c a Python float drawn from 0.5 to 3.0 (torch.mul as x * c)"
    constants = (0.5, 1.5, 2.0, 3.0)
    call = "{x} * {c}"


@register
class DivScalar(PositiveScalar):
    description = "DivScalar: x / c, elementwise, c a Python float drawn from 2.0 to 8.0 (torch.div as x / c)"
    constants = (2.0, 3.0, 4.0, 8.0)
    call = "{x} / {c}"


@register
class AddScalar(Scalar):
    description = "AddScalar: x + c, elementwise, c a Python float drawn from -1.0 to 2.0 (torch.add as x + c)"
    constants = (-1.0, -0.5, 0.5, 1.0, 2.0)

    def render(self, r: RenderContext) -> str:
        c = r.params["c"]
        return f"{r.args[0]} - {-c}" if c < 0 else f"{r.args[0]} + {c}"


@register
class BiasAdd(Operator):
    description = ("BiasAdd: x + bias, a standard-normal parameter of one value per channel (axis 1) shaped "
                   "(C, 1, ..., 1), or (C,) for a rank-2 input, as KernelBench's nn.Parameter(torch.randn(bias_shape)) "
                   "(torch.add as x + bias)")
    family = "elementwise"
    arity = 2  # input and bias
    input_ranks = (2, 3, 4, 5)
    # Each channel is shifted by its own amount: signs, ties and the order across channels all
    # change (an ArgMax over axis 1 picks others), so no fact of the input is kept.
    keeps_facts = False

    def accepts(self, x):  # one channel would make the bias a scalar
        return x.rank in self.input_ranks and x.dims[1].hi > 1

    def plan(self, b, x, want_ranks):
        x.dims[1].require_at_least(2)
        ones = tuple(b.fixed(1) for _ in range(x.rank - 2))  # broadcast over the axes after the channels
        bias = b.parameter((x.dims[1],) + ones, min_numel=1)
        return Plan(inputs=[x, bias], out_dims=x.dims)

    def render(self, r: RenderContext) -> str:
        return f"{r.args[0]} + {r.args[1]}"
