"""Convolutions and transposed convolutions over 1, 2 or 3 spatial axes.

Stride, padding, dilation, groups (and output_padding) are solver Vars; their drawn hints
make padding 0, dilation > 1 and groups > 1 all common. Kernels are square (one
kernel_size for every spatial axis); the weight, and on half the nodes a (Cout,) bias, are
parameters of the program, initialised as torch.nn's Conv modules do.
"""
from __future__ import annotations

from typing import ClassVar

from generator_core.ops.base import F, Operator, Plan, register, unpinned
from generator_core.symbolic import MAX_DIM, Term

KERNEL_MAX = {1: 15, 2: 11, 3: 7}


def draw_window_params(b, n: int, kernel_hints: list[int], kernel_max: int, dilation: bool) -> dict:
    """Solver Vars for a sliding window, each hinted towards a typical value."""
    rng = b.rng
    k = b.param("kernel_size", 1, kernel_max, rng.choice(kernel_hints))
    d = b.param("dilation", 1, 3, 1 if rng.random() < 0.6 else rng.choice([2, 3])) if dilation else None
    reach = (d.hint if d else 1) * (k.hint - 1)  # padding may be at most half of it
    params = {
        "kernel_size": k,
        "stride": b.param("stride", 1, 4, rng.choice([1, 1, 1, 2, 2, 3])),
        "padding": b.param("padding", 0, kernel_max, 0 if rng.random() < 0.4 or reach < 2 else rng.randint(1, reach // 2)),
    }
    if d:
        params["dilation"] = d
    return params


def window_span(m, p):
    """dilation * (kernel_size - 1): how far the window reaches past its first tap."""
    reach = m.expr_var(m.v(p["kernel_size"]) - 1, 0, MAX_DIM)
    return m.product([m.v(p["dilation"]), reach]) if "dilation" in p else reach


def constrain_window_output(m, length, out, p) -> None:
    """out = floor((length + 2*padding - dilation*(kernel_size-1) - 1) / stride) + 1.

    Also padding <= span / 2 and length > span: then every output window holds at least one
    real input element (otherwise a window over padding only yields 0, or -inf for max
    pooling, and small inputs give constant outputs)."""
    span = window_span(m, p)
    m.add(2 * m.v(p["padding"]) <= span)
    m.add(m.v(length) >= span + 1)
    numerator = m.expr_var(m.v(length) + 2 * m.v(p["padding"]) - span - 1, 0, 3 * MAX_DIM)
    m.add_division(m.v(out) - 1, numerator, m.v(p["stride"]))


MIN_TRANSPOSED_IN_PER_GROUP = 8
# Chance that a convolution has a bias: torch.nn's modules default to bias=True (KernelBench's
# level-2 problems keep it), its level-1 convolution problems pass bias=False; both are common.
BIAS_P = 0.5


class Convolution(Operator):
    """What a convolution and a transposed convolution share: an (N, Cin, *spatial) input, a
    weight, maybe a bias, solved window parameters and channels split into groups."""

    family = "conv"
    arity = 3  # input, weight and (on half the nodes) bias
    n: ClassVar[int]
    makes_facts = frozenset({"large"})
    # ArgMax / ArgMin indices (few, capped for ties) cannot carry a FLOPs window: a
    # convolution of them is given a fresh input instead.
    pointless_on = frozenset({"discrete"})
    min_in_per_group: ClassVar[int] = 1  # input channels each group reduces over

    def __init__(self):
        self.input_ranks = (self.n + 2,)
        self.flops_per_element_bound = 2 * MAX_DIM * KERNEL_MAX[self.n] ** self.n

    def accepts(self, x):
        return x.rank in self.input_ranks and unpinned(x, range(1, x.rank))

    def plan(self, b, x, want_ranks):
        batch, c_in = x.dims[:2]
        p = draw_window_params(b, self.n, [1, 3, 3, 3, 5, 7][: 6 - self.n], KERNEL_MAX[self.n], True)
        p["groups"] = b.param("groups", 1, 512, 1 if b.rng.random() < 0.55 else b.rng.choice([2, 3, 4, 8]))
        p["in_per_group"] = b.dim()
        p["out_per_group"] = b.dim()
        c_out = b.dim()
        dims = self.weight_dims(b, c_in, c_out, p)
        weight = b.parameter(dims, fan_in=dims[1:])  # torch's fan-in: weight.size(1) * kernel volume
        out_spatial = tuple(b.derived_dim() for _ in range(self.n))
        inputs = [x, weight]
        # Drawn after everything else, so a node's other draws do not depend on it. The bias
        # takes its weight's bound, as torch.nn's reset_parameters does; FLOPs do not count its
        # add (FlopCounterMode does not).
        if b.rng.random() < BIAS_P:
            inputs.append(b.parameter((c_out,), fan_in=dims[1:], min_numel=1))
        return Plan(inputs=inputs, out_dims=(batch, c_out) + out_spatial, params=p)

    def weight_dims(self, b, c_in, c_out, p) -> tuple:
        """The weight's shape (may draw more parameters into `p`)."""
        raise NotImplementedError

    def constrain(self, node, m):
        x, p = node.inputs[0], node.params
        m.add(m.v(x.dims[1]) == m.product([p["groups"], p["in_per_group"]]))
        m.add(m.v(node.output.dims[1]) == m.product([p["groups"], p["out_per_group"]]))
        if self.min_in_per_group > 1:
            m.add(m.v(p["in_per_group"]) >= self.min_in_per_group)
        for length, out in zip(x.dims[2:], node.output.dims[2:]):
            self.constrain_output_length(m, length, out, p)

    def constrain_output_length(self, m, length, out, p) -> None:
        raise NotImplementedError

    def min_flops(self):
        return 2 * 32

    def render_call(self, r, fn: str, extra: str = "") -> str:
        p = r.params  # the bias, when there is one, is the third positional argument
        return (f"{F}.{fn}({', '.join(r.args)}, stride={p['stride']}, padding={p['padding']}"
                f"{extra}, dilation={p['dilation']}, groups={p['groups']})")


class Conv(Convolution):
    flops_formula = "2 * output numel * Cin/groups * kernel volume"

    def weight_dims(self, b, c_in, c_out, p):
        return (c_out, p["in_per_group"]) + (p["kernel_size"],) * self.n

    def constrain_output_length(self, m, length, out, p):
        constrain_window_output(m, length, out, p)

    def flops(self, node):
        kernel = (node.params["kernel_size"],) * self.n
        return [Term(2, node.output.dims + (node.params["in_per_group"],) + kernel)]

    def render(self, r):
        return self.render_call(r, f"conv{self.n}d")


class ConvTranspose(Convolution):
    flops_formula = "2 * input numel * Cout/groups * kernel volume"
    # Its GEMM reduces over in_per_group: with a handful of input channels per group, cuDNN's
    # kernels (and the per-group fallback) crawl. Measured on an H100 at 2**34 FLOPs: 0.5-1.6 s
    # with 1-5 channels per group, 95 s for a depthwise one (groups = channels), against a
    # floor of a few ms.
    min_in_per_group = MIN_TRANSPOSED_IN_PER_GROUP

    def weight_dims(self, b, c_in, c_out, p):
        p["output_padding"] = b.param("output_padding", 0, 3, 1 if b.rng.random() < 0.2 else 0)
        return (c_in, p["out_per_group"]) + (p["kernel_size"],) * self.n

    def constrain_output_length(self, m, length, out, p):
        """out = (length-1)*stride - 2*padding + dilation*(kernel_size-1) + output_padding + 1,
        with output_padding smaller than stride or dilation (PyTorch's rule)."""
        stride, dilation, out_pad = m.v(p["stride"]), m.v(p["dilation"]), m.v(p["output_padding"])
        stretched = m.product([m.expr_var(m.v(length) - 1, 0, MAX_DIM), stride])
        span, padding = window_span(m, p), m.v(p["padding"])
        m.add(m.v(out) == stretched - 2 * padding + span + out_pad + 1)
        m.add(out_pad < m.max_var([stride, dilation]))
        # Cropping no more than the kernel's half reach keeps some input under every border.
        m.add(2 * padding <= span)
        m.add(padding <= stretched + out_pad)

    def flops(self, node):  # the dense work: every input element meets every kernel tap
        kernel = (node.params["kernel_size"],) * self.n
        return [Term(2, node.inputs[0].dims + (node.params["out_per_group"],) + kernel)]

    def render(self, r):
        return self.render_call(r, f"conv_transpose{self.n}d", f", output_padding={r.params['output_padding']}")


@register
class Conv1d(Conv):
    description = ("Conv1d: 1-D convolution of an (N, Cin, L) input with a weight and, on half the nodes, a "
                   "(Cout,) bias; kernel_size, stride, padding, dilation, groups and the output channels are solved "
                   "(F.conv1d)")
    n = 1


@register
class Conv2d(Conv):
    description = ("Conv2d: 2-D convolution of an (N, Cin, H, W) input with a weight and, on half the nodes, a "
                   "(Cout,) bias; kernel_size, stride, padding, dilation, groups and the output channels are solved "
                   "(F.conv2d)")
    n = 2


@register
class Conv3d(Conv):
    description = ("Conv3d: 3-D convolution of an (N, Cin, D, H, W) input with a weight and, on half the nodes, a "
                   "(Cout,) bias; kernel_size, stride, padding, dilation, groups and the output channels are solved "
                   "(F.conv3d)")
    n = 3


@register
class ConvTranspose1d(ConvTranspose):
    description = ("ConvTranspose1d: 1-D transposed convolution of an (N, Cin, L) input with a weight and, on half "
                   "the nodes, a (Cout,) bias; kernel_size, stride, padding, output_padding, dilation, groups and the "
                   "output channels are solved (F.conv_transpose1d)")
    n = 1


@register
class ConvTranspose2d(ConvTranspose):
    description = ("ConvTranspose2d: 2-D transposed convolution of an (N, Cin, H, W) input with a weight and, on "
                   "half the nodes, a (Cout,) bias; kernel_size, stride, padding, output_padding, dilation, groups "
                   "and the output channels are solved (F.conv_transpose2d)")
    n = 2


@register
class ConvTranspose3d(ConvTranspose):
    description = ("ConvTranspose3d: 3-D transposed convolution of an (N, Cin, D, H, W) input with a weight and, "
                   "on half the nodes, a (Cout,) bias; kernel_size, stride, padding, output_padding, dilation, "
                   "groups and the output channels are solved (F.conv_transpose3d)")
    n = 3
