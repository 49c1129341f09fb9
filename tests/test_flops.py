"""FLOPs conventions: every operator costs what its catalogue formula says, and agrees with
torch.utils.flop_counter wherever that counts an operator."""
from __future__ import annotations

import math

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from generator_core import OPERATORS, generate
from generator_core.ops.conv import ConvTranspose
from helpers import ops_of, spec, tensor_shapes

# The families FlopCounterMode counts, less what it does not see: DiagMatmul (linalg) stands
# for torch.diag(d) @ x but computes an elementwise multiply, one FLOP per element, which
# the counter (it counts matmuls and convolutions only) never counts; its formula is checked
# below and the counter's 0 for it too. Heavy means declaring more FLOPs per element than 1.
COUNTED_FAMILIES = ops_of("linalg", "conv")
HEAVY = [n for n in COUNTED_FAMILIES if OPERATORS[n].flops_per_element_bound]
TRANSPOSED = [n for n in ops_of("conv") if isinstance(OPERATORS[n], ConvTranspose)]


def counted_flops(code: str) -> int:
    """FLOPs that PyTorch's own counter sees when the program runs. Attention runs on its
    math path: the counter's registry has the GPU attention kernels (flash, efficient,
    cuDNN: 2*L*S*E + 2*L*S*Ev) but not the CPU flash kernel, which CPU takes for rank 4
    with E == Ev and which then counts 0; the math path's two bmms count the same FLOPs."""
    namespace: dict = {}
    exec(code, namespace)
    with torch.no_grad(), sdpa_kernel(SDPBackend.MATH):
        inputs = namespace["get_inputs"]()
        with FlopCounterMode(display=False) as counter:
            namespace["fused_operator"](*inputs)
    return counter.get_total_flops()


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("name", HEAVY)
def test_single_op_flops_match_flop_counter(name, seed):
    """For a lone matmul/conv op, sample.flops equals FlopCounterMode's total (5 seeds x 5 indices)."""
    for index in range(5):
        s = generate(spec(op_sequence=[name], seed=seed, validate=False), index)
        assert s.flops == s.flops_by_op[0] == counted_flops(s.pytorch), (name, seed, index)


@pytest.mark.parametrize("index", range(8))
def test_mixed_program_heavy_node_flops_match_counter(index):
    """In level-2 programs, the counter's total equals the flops_by_op of the linalg/conv nodes."""
    pool = HEAVY + ops_of("elementwise", "activation")
    s = generate(spec(level=2, ops=pool, seed=3, validate=False), index)
    nodes = s.graph["nodes"]
    assert len(s.flops_by_op) == len(nodes) and sum(s.flops_by_op) == s.flops
    heavy = sum(f for f, n in zip(s.flops_by_op, nodes) if n["op"] in HEAVY)
    assert counted_flops(s.pytorch) == heavy


def test_transposed_ops_are_selected():
    """The transposed-convolution set is found from operator data: one per spatial rank."""
    assert sorted(OPERATORS[n].input_ranks[0] for n in TRANSPOSED) == [3, 4, 5]


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("name", TRANSPOSED)
def test_conv_transpose_convention_by_hand(name, seed):
    """ConvTranspose FLOPs = 2 * input numel * (Cout / groups) * kernel volume, from graph params."""
    s = generate(spec(op_sequence=[name], seed=seed, validate=False), seed)
    node = s.graph["nodes"][0]
    assert "conv_transpose" in s.pytorch
    shapes, p = tensor_shapes(s.graph), node["params"]
    x_shape = shapes[node["inputs"][0]]
    c_out, groups, k = node["shape"][1], p["groups"], p["kernel_size"]
    assert c_out % groups == 0
    expected = 2 * math.prod(x_shape) * (c_out // groups) * k ** (len(x_shape) - 2)
    assert s.flops_by_op[0] == s.flops == expected


def _kernel_volume(node: dict, out_shape: list[int]) -> int:
    return node["params"]["kernel_size"] ** (len(out_shape) - 2)


# The catalogue's FLOPs formulas (docs/operators.md), evaluated on a solved node's concrete
# shapes and parameters. An operator with a formula not listed here fails the test below:
# a new convention must be taught here, against the number PyTorch's own counter gives
# where it counts one.
FORMULAS = {
    "flops_per_element * output numel": lambda op, node, x, out: op.flops_per_element * math.prod(out),
    "flops_per_element * input numel": lambda op, node, x, out: op.flops_per_element * math.prod(x),
    "output numel * kernel volume": lambda op, node, x, out: math.prod(out) * _kernel_volume(node, out),
    "0 (data movement)": lambda op, node, x, out: 0,
    "flops_per_element * output numel (one multiply each: the diagonal matrix is never built)":
        lambda op, node, x, out: op.flops_per_element * math.prod(out),
    "2 * output numel * Cin/groups * kernel volume":
        lambda op, node, x, out: 2 * math.prod(out) * x[1] // node["params"]["groups"] * _kernel_volume(node, out),
    "2 * input numel * Cout/groups * kernel volume":
        lambda op, node, x, out: 2 * math.prod(x) * out[1] // node["params"]["groups"] * _kernel_volume(node, out),
}


@pytest.mark.parametrize("name", sorted(OPERATORS))
def test_every_operator_costs_what_its_catalogue_formula_says(name):
    """Each lone operator's flops_by_op equals its documented formula on the solved shapes;
    where FlopCounterMode counts the operator (matmul, conv) it must agree too."""
    op = OPERATORS[name]
    for index in range(3):
        s = generate(spec(op_sequence=[name], seed=5, validate=False), index)
        node, shapes = s.graph["nodes"][0], tensor_shapes(s.graph)
        x, out = shapes[node["inputs"][0]], node["shape"]
        if op.flops_formula in FORMULAS:
            assert s.flops_by_op[0] == FORMULAS[op.flops_formula](op, node, x, out), (name, index)
        else:  # matmul-like: PyTorch's counter is the reference (checked below)
            assert name in HEAVY, f"{name}: teach FORMULAS its formula {op.flops_formula!r}"
        if name in HEAVY:
            assert s.flops_by_op[0] == counted_flops(s.pytorch), (name, index)
        elif name in COUNTED_FAMILIES:  # computed elementwise: nothing the counter counts
            assert counted_flops(s.pytorch) == 0, (name, index)
