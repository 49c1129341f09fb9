"""Normalisations without affine weights (statistics computed from the input itself)."""
from __future__ import annotations

from typing import ClassVar

from generator_core.ops.base import F, InputCosted, Plan, choose_axis, has_free_axis, register


# Elements one statistic reduces over (a channel, a group, a row). GPU kernels give each
# statistic one block, so a few huge ones crawl: measured on an H100, a one-channel
# BatchNorm over 2**30 elements took 1.4 s, a LayerNorm over rows of 2**24 0.26 s, against
# floors of 2-4 ms. Capped, the work spreads over many blocks.
MAX_REDUCED = 2**22
# A norm of randn inputs is about the identity when each statistic covers many elements (the
# sample mean and variance of n values are off by ~1/sqrt(n)): a norm reading a graph input
# reduces at most this many, so that its statistics differ from (0, 1) beyond 1e-2.
MAX_REDUCED_OF_INPUT = 2**10


class Normalization(InputCosted):
    family = "norm"
    flops_per_element = 5  # mean 1, variance 2, normalise 2
    makes_facts = frozenset({"standardized"})
    pointless_on = frozenset({"standardized"})
    # Is it about the identity on a graph input (randn) when a statistic covers many values?
    # Then a norm reading an input reduces at most MAX_REDUCED_OF_INPUT values.
    identity_on_randn: ClassVar[bool] = True
    call: ClassVar[str]  # a format string over {x} and the node's params

    def render(self, r):
        return self.call.format(x=r.args[0], **r.params)

    def reduced(self, dims, params) -> list:
        """The input dims (and params) whose product is the size of one statistic: solver
        Vars while solving, ints on a solved graph (tests check the cap there)."""
        raise NotImplementedError

    def constrain(self, node, m):
        cap = MAX_REDUCED_OF_INPUT if node.inputs[0].is_input and self.identity_on_randn else MAX_REDUCED
        m.add(m.product(list(self.reduced(node.inputs[0].dims, node.params))) <= cap)


class AxesNorm(Normalization):
    """A norm whose statistics span fixed `axes` of the input, one of them free (of size >= 2)."""

    input_ranks = (2, 3, 4, 5)

    def axes(self, rank: int) -> list[int]:
        raise NotImplementedError

    def accepts(self, x):
        return x.rank in self.input_ranks and has_free_axis(x, self.axes(x.rank))

    def plan(self, b, x, want_ranks):
        choose_axis(b, x, axes=self.axes(x.rank))
        return Plan(inputs=[x], out_dims=x.dims)

    def reduced(self, dims, params):
        return [dims[a] for a in self.axes(len(dims))]


@register
class BatchNorm(AxesNorm):
    description = ("BatchNorm: normalises each channel (axis 1) to mean 0 and variance 1 over the batch and "
                   "spatial axes, training-mode statistics, no affine weights (F.batch_norm)")
    # Functional form with no running stats: nothing device-specific (the original's
    # `.cuda()` buffers crash on CPU).
    call = F + ".batch_norm({x}, None, None, training=True)"

    def axes(self, rank):
        # Training-mode statistics need more than one value per channel.
        return [a for a in range(rank) if a != 1]


@register
class LayerNorm(Normalization):
    description = ("LayerNorm: normalises over the last 1 to 3 axes (drawn) to mean 0 and variance 1, no affine "
                   "weights (F.layer_norm)")
    def accepts(self, x):
        return bool(x.free_axes())

    def plan(self, b, x, want_ranks):
        # Normalise over the last k axes; they must include a free axis of size >= 2.
        k_min = x.rank - max(x.free_axes())
        k = b.rng.randint(k_min, max(k_min, min(x.rank, 3)))
        choose_axis(b, x, axes=list(range(x.rank - k, x.rank)))
        return Plan(inputs=[x], out_dims=x.dims, params={"normalized_axes": k})

    def reduced(self, dims, params):
        return list(dims[-params["normalized_axes"]:])

    def render(self, r):
        shape = r.in_shapes[0][len(r.in_shapes[0]) - r.params["normalized_axes"]:]
        return f"{F}.layer_norm({r.args[0]}, {shape})"


@register
class GroupNorm(Normalization):
    description = ("GroupNorm: normalises each group of channels together with the spatial axes to mean 0 and "
                   "variance 1; num_groups is solved (F.group_norm)")
    input_ranks = (2, 3, 4, 5)
    call = F + ".group_norm({x}, {num_groups})"

    def accepts(self, x):
        return x.rank in self.input_ranks and x.dims[1].hi > 1

    def plan(self, b, x, want_ranks):
        x.dims[1].require_at_least(2)
        hint = b.rng.choice([1, 2, 4, 8, 16, 32])
        # channels_per_group >= 2 keeps every group's statistics over more than one value.
        params = {"num_groups": b.param("num_groups", 1, 4096, hint),
                  "channels_per_group": b.param("channels_per_group", 2, 8192, 2)}
        params["channels_per_group"].band = None
        return Plan(inputs=[x], out_dims=x.dims, params=params)

    def constrain(self, node, m):
        p = node.params
        m.add(m.v(node.inputs[0].dims[1]) == m.product([p["num_groups"], p["channels_per_group"]]))
        super().constrain(node, m)

    def reduced(self, dims, params):
        return [params["channels_per_group"], *dims[2:]]


@register
class InstanceNorm(AxesNorm):
    description = ("InstanceNorm: normalises each (sample, channel) over its spatial axes to mean 0 and variance 1 "
                   "(F.instance_norm)")
    input_ranks = (3, 4, 5)
    call = F + ".instance_norm({x})"

    def axes(self, rank):
        return list(range(2, rank))


@register
class RMSNorm(AxesNorm):
    description = ("RMSNorm: x divided by its root mean square over the features (axis 1), eps 1e-5, no affine "
                   "weights (torch.sqrt of torch.mean of x ** 2, keepdim)")
    makes_facts = frozenset()  # RMS 1, but not mean 0: a LayerNorm after it still works
    flops_per_element = 4  # square, mean, sqrt, divide
    call = "{x} / torch.sqrt(torch.mean({x} ** 2, dim=1, keepdim=True) + 1e-5)"

    def axes(self, rank):
        return [1]


class Normalize(Normalization):
    """x divided by its p-norm along one drawn axis (F.normalize): a scale per slice, not a
    standardisation, so not the identity on randn however long the slice."""

    makes_facts = frozenset()
    pointless_on = frozenset()
    identity_on_randn = False
    flops_per_element = 3  # |x|**p, accumulate, divide

    def accepts(self, x):
        return x.rank in self.input_ranks and bool(x.free_axes())

    def plan(self, b, x, want_ranks):
        return Plan(inputs=[x], out_dims=x.dims, params={"dim": choose_axis(b, x)})

    def reduced(self, dims, params):
        return [dims[params["dim"]]]


@register
class L1Normalize(Normalize):
    description = "L1Normalize: x divided by its 1-norm along one drawn axis (F.normalize with p=1.0)"
    call = F + ".normalize({x}, p=1.0, dim={dim})"


@register
class L2Normalize(Normalize):
    description = "L2Normalize: x divided by its Euclidean norm along one drawn axis (F.normalize with p=2.0)"
    call = F + ".normalize({x}, p=2.0, dim={dim})"

