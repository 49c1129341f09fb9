"""Losses (KernelBench level 1, problems 94-100), each reduced over ONE drawn axis: the
per-row loss, not the batch mean. A loss reduced to one scalar is a poor task: in half types
a constant (its expected value) passes allclose at 1e-2, and programs here have no rank-0
tensors. So a loss reads like a Reduction: one axis of at least 2 elements is reduced, at
least one other stays, keepdim drawn where the torch call allows it."""
from __future__ import annotations

from typing import ClassVar

from generator_core.ops.base import F, InputCosted, Plan, RenderContext, choose_axis, reduce_axis, register


class Loss(InputCosted):
    """A loss of the input `a` (predictions) against same-shaped fresh targets, per slice
    along the reduced axis `dim`. FLOPs: flops_per_element * input numel. In float16 and
    bfloat16 the inputs are upcast and the loss cast back: float32 math, as autocast runs
    losses."""

    family = "loss"
    arity = 2
    input_ranks = (2, 3, 4, 5)
    makes_facts = frozenset({"nonnegative"})
    keepdim_drawn: ClassVar[bool] = True  # False: the output always drops the axis
    # The torch call drops the axis; a drawn keepdim is rendered as unsqueeze(dim).
    keepdim_by_unsqueeze: ClassVar[bool] = False
    # The reduced axis, when the torch call fixes it (cross_entropy's class axis 1,
    # pairwise_distance's last): None draws it.
    fixed_axis: ClassVar[int | None] = None
    # Longest reduced axis. A per-row mean of randn-derived terms concentrates as 1/sqrt(n)
    # around its expected value: over long rows that constant passes the loose tolerance.
    max_axis: ClassVar[int | None] = None
    call: ClassVar[str]  # a format string over {a}, {b} (and {c}), {dim}, {keepdim}; postfix-safe

    def _axis(self, rank: int) -> int | None:
        return None if self.fixed_axis is None else self.fixed_axis % rank

    def accepts(self, x):
        # The reduced axis and one more must be free, or the output would be a scalar.
        if x.rank not in self.input_ranks or len(x.free_axes()) < 2:
            return False
        axis = self._axis(x.rank)
        return axis is None or x.dims[axis].hi > 1

    def output_ranks(self, rank):
        return {rank - 1, rank} if self.keepdim_drawn else {rank - 1}

    def plan(self, builder, x, want_ranks):  # not `b`, which names the targets in `call`
        fixed = self._axis(x.rank)
        axis = choose_axis(builder, x, axes=None if fixed is None else [fixed])
        keepdim, dims = reduce_axis(builder, x, axis, want_ranks, (False, True) if self.keepdim_drawn else (False,))
        # Targets are fresh graph inputs, never a reused tensor (as elementwise partners may
        # be): a loss of x against a tensor it was computed from is about 0 when the path
        # between them is about the identity (LayerNorm of randn: 10 of 18 attempts of
        # LayerNorm then MSELoss rejected as removable or zeros), and two reused targets of a
        # triplet loss can be one tensor, d(a, p) = d(a, n), a constant.
        targets = [builder.fresh_input(x.dims) for _ in range(self.arity - 1)]
        return Plan(inputs=[x, *targets], out_dims=dims, params={"dim": axis, "keepdim": keepdim})

    def constrain(self, node, m):
        if self.max_axis is not None:
            m.add(m.v(node.inputs[0].dims[node.params["dim"]]) <= self.max_axis)

    def render(self, r: RenderContext) -> str:
        # float16 / bfloat16 inputs are upcast to float32 and the loss cast back, as autocast
        # runs every loss: in the half type each step rounds (a loss of bfloat16 squares or
        # softmaxes was often 1-2 ulps, beyond 3/4 of 1e-2, from float64; a triplet loss's
        # distances are about sqrt(2 * length), and their rounding alone is beyond 1e-2 of a
        # difference of about 1).
        upcast = r.dtype != "torch.float32"
        args = [f"{a}.float()" if upcast else a for a in r.args]
        expr = self.call.format(**dict(zip("abc", args)), **r.params)
        if self.keepdim_by_unsqueeze and r.params["keepdim"]:
            expr += f".unsqueeze({r.params['dim']})"
        # The input's dtype, not a literal one: validation replays the program in float64
        # (where .float() makes the truth float32's: within 1e-6 of float64, far inside 1e-2).
        return f"{expr}.to({r.args[0]}.dtype)" if upcast else expr


class MeanLoss(Loss):
    """An elementwise loss (reduction='none') averaged along the drawn axis."""

    makes_facts = frozenset({"nonnegative", "concentrated"})  # about its expected value, row to row
    # Rows of n randn terms of mean m and deviation s: the per-row means stay within
    # 4e-2 * (1 + m) of m (the constant m passes) when that is less than about 1.5 * s / sqrt(n),
    # 1.5 deviations being how far the extreme of a few rows reaches. So n is at most
    # (1.5 * s / (4e-2 * (1 + m)))**2, measured on randn: MSE (m 2.0, s 2.83) 1250; Huber
    # (0.72, 0.76) 277; hinge (1.08, 0.87) 244.
    max_axis = 256
    pointwise: ClassVar[str]  # a format string over {a}, {b}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "pointwise" in cls.__dict__:
            cls.call = cls.pointwise + ".mean(dim={dim}, keepdim={keepdim})"


@register
class MSELoss(MeanLoss):
    description = ("MSELoss: the mean squared error (a - b)**2 of predictions a against same-shaped targets b, "
                   "averaged along one drawn axis, keepdim drawn; float32 math for half types "
                   "(F.mse_loss, reduction='none', then a mean)")
    flops_per_element = 3  # subtract, square, accumulate
    max_axis = 1024
    pointwise = F + ".mse_loss({a}, {b}, reduction='none')"


@register
class HuberLoss(MeanLoss):
    description = ("HuberLoss: the Huber loss, delta 1.0 (quadratic below 1, linear above), of predictions "
                   "against same-shaped targets, averaged along one drawn axis, keepdim drawn; float32 math for half "
                   "types (F.huber_loss, reduction='none', then a mean)")
    flops_per_element = 5  # subtract, abs, compare, square or linear branch, accumulate
    pointwise = F + ".huber_loss({a}, {b}, reduction='none', delta=1.0)"


@register
class HingeLoss(MeanLoss):
    description = ("HingeLoss: clamp(1 - a * sign(b), min=0), a hinge of predictions a against +-1 targets "
                   "(the signs of a same-shaped tensor b), averaged along one drawn axis, keepdim drawn; float32 math "
                   "for half types (torch.clamp, then a mean)")
    flops_per_element = 5  # sign, multiply, subtract, clamp, accumulate
    pointwise = "torch.clamp(1.0 - {a} * torch.sign({b}), min=0.0)"


@register
class KLDivLoss(Loss):
    description = ("KLDivLoss: the KL divergence along one drawn axis from softmax(a) to the target "
                   "distribution softmax(b), summed along it, keepdim drawn; float32 math for half types (F.kl_div "
                   "of log_softmax(a) and softmax(b), reduction='none', then a sum)")
    # log_softmax 5 (max, subtract, exp, accumulate, subtract the log), softmax 5 (max,
    # subtract, exp, accumulate, divide), target * (log target - input) 3, accumulate 1
    flops_per_element = 14
    # randn rows: about 1 +- 2 / sqrt(n) (n 256: 0.99 +- 0.12), 1.5 deviations 2.3 times
    # 4e-2 * (1 + 0.99) there; about 1.15 times at 1024 (see MeanLoss).
    max_axis = 1024
    call = (F + ".kl_div(" + F + ".log_softmax({a}, dim={dim}), " + F + ".softmax({b}, dim={dim}), "
            "reduction='none').sum(dim={dim}, keepdim={keepdim})")


@register
class CrossEntropyLoss(Loss):
    description = ("CrossEntropyLoss: the cross entropy of logits a against class probabilities softmax(b), "
                   "classes along axis 1 as F.cross_entropy wants them (N, C, ...); the class axis is dropped, "
                   "or kept as size 1 (unsqueeze) when drawn; float32 math for half types (F.cross_entropy, "
                   "reduction='none')")
    fixed_axis = 1  # F.cross_entropy's class axis: the call as written, no moved axes
    # -sum(p * log_softmax(a)) of logits a in a narrow band is about log C whatever b is:
    # concentrated values, and Softmax or Sigmoid outputs in [0, 1], known only as
    # nonnegative (Softmax then CrossEntropyLoss: 48 of 58 attempts rejected as a constant
    # passing); ReLU and Abs outputs are excluded with them.
    collapses_on = frozenset({"concentrated", "nonnegative"})
    makes_facts = frozenset({"nonnegative", "concentrated"})  # about log C, row to row
    # Rows of C randn logits: the loss is about log C + 0.5 +- 1.4 / sqrt(C) (measured: C 64,
    # 4.65 +- 0.18; 128, 5.35 +- 0.13), and 1.5 deviations must exceed 4e-2 * (1 + the mean),
    # or that constant passes (see MeanLoss): at 64 classes 1.19 times, at 128 0.79.
    max_axis = 64
    flops_per_element = 12  # log_softmax 5, softmax of the targets 5, multiply, accumulate
    keepdim_by_unsqueeze = True
    call = F + ".cross_entropy({a}, " + F + ".softmax({b}, dim=1), reduction='none')"


@register
class TripletMarginLoss(Loss):
    description = ("TripletMarginLoss: max(d(a, p) - d(a, n) + 1.0, 0), d the Euclidean distance along the last "
                   "axis, of an anchor a and same-shaped positive p and negative n; the last axis is dropped; "
                   "float32 math for half types (F.triplet_margin_loss, reduction='none')")
    arity = 3
    fixed_axis = -1  # pairwise_distance reduces the last axis
    keepdim_drawn = False
    makes_facts = frozenset({"nonnegative", "sparse"})  # the hinge zeroes about a quarter of the rows
    flops_per_element = 8  # per anchor element: 2 subtracts, 2 eps adds, 2 squares, 2 accumulates
    call = F + ".triplet_margin_loss({a}, {b}, {c}, margin=1.0, reduction='none')"


@register
class CosineSimilarityLoss(Loss):
    description = ("CosineSimilarityLoss: 1 - the cosine similarity of a and a same-shaped b along one drawn "
                   "axis, which is dropped, or kept as size 1 (unsqueeze) when drawn; float32 math for half types "
                   "(F.cosine_similarity)")
    makes_facts = frozenset({"nonnegative", "concentrated"})  # 1 +- 1/sqrt(n)
    # 1 - cos of random vectors is 1 +- 1/sqrt(n): over long axes the constant 1 passes; at
    # 256, 1.5 deviations are 1.17 times 4e-2 * (1 + 1) (see MeanLoss).
    max_axis = 256
    flops_per_element = 6  # a*b, |a|**2, |b|**2: a multiply and an accumulate each
    keepdim_by_unsqueeze = True
    call = "(1.0 - " + F + ".cosine_similarity({a}, {b}, dim={dim}))"
