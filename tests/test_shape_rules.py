"""Shapes where PyTorch's CUDA kernels crawl are never generated (each rule came from a GPU
profile; see the operators' comments). Checked on the solved graphs of many samples, at the
small window and at the default one, where the sizes that triggered them live."""
from __future__ import annotations

import math

import pytest

from generator_core import GenerationSpec
from generator_core.generate import solve_attempt
from generator_core.ops.conv import MIN_TRANSPOSED_IN_PER_GROUP
from generator_core.ops.norm import MAX_REDUCED
from generator_core.ops.scan import MIN_INNERMOST_SCAN
from helpers import HI, LO

WINDOWS = [(LO, HI), (2**34, 2**35)]


def solved_nodes(op: str, window: tuple[int, int], count: int = 25):
    """(node, shapes by tensor name) of `op` in the first solved attempt of `count` indices."""
    spec = GenerationSpec(op_sequence=[op], min_flops=window[0], max_flops=window[1], validate=False, seed=3)
    for index in range(count):
        c = solve_attempt(spec, index, 0)
        if isinstance(c, str):
            continue
        g = c.fields["graph"]
        shapes = {t["name"]: t["shape"] for t in g["inputs"]} | {n["output"]: n["shape"] for n in g["nodes"]}
        yield from ((n, shapes) for n in g["nodes"] if n["op"] == op)


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("op", ["ConvTranspose1d", "ConvTranspose2d", "ConvTranspose3d"])
def test_transposed_convolutions_keep_enough_input_channels_per_group(op, window):
    nodes = list(solved_nodes(op, window))
    assert nodes
    assert all(n["params"]["in_per_group"] >= MIN_TRANSPOSED_IN_PER_GROUP for n, _ in nodes)


def _reduced(op: str, node: dict, shape: list[int]) -> int:
    if op == "BatchNorm":
        return math.prod(shape) // shape[1]
    if op == "InstanceNorm":
        return math.prod(shape[2:])
    if op == "GroupNorm":
        return math.prod(shape[1:]) // node["params"]["num_groups"]
    return math.prod(shape[-node["params"]["normalized_axes"]:])  # LayerNorm


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("op", ["BatchNorm", "InstanceNorm", "GroupNorm", "LayerNorm"])
def test_normalisations_reduce_a_bounded_number_of_elements(op, window):
    nodes = list(solved_nodes(op, window))
    assert nodes
    assert all(_reduced(op, n, shapes[n["inputs"][0]]) <= MAX_REDUCED for n, shapes in nodes)


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("op", ["CumMax", "CumMin"])
def test_innermost_scans_with_indices_are_long_enough(op, window):
    innermost = [(n, shapes[n["inputs"][0]]) for n, shapes in solved_nodes(op, window, 60)
                 if n["params"]["dim"] == len(shapes[n["inputs"][0]]) - 1]
    assert innermost  # the rule is exercised
    assert all(shape[-1] >= MIN_INNERMOST_SCAN for _, shape in innermost)
