"""Shapes where PyTorch's CUDA kernels crawl are never generated (each rule came from a GPU
profile; see the operators' comments). Checked on the solved graphs of many samples, at the
small window and at the default one, where the sizes that triggered them live."""
from __future__ import annotations

import math

import pytest

from generator_core import OPERATORS, GenerationSpec
from generator_core.generate import solve_attempt
from generator_core.ops.conv import MIN_TRANSPOSED_IN_PER_GROUP
from generator_core.ops.norm import MAX_REDUCED, Normalization
from generator_core.ops.scan import MIN_INNERMOST_SCAN, Scan
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


# The operators that carry each rule, found from their declarations (no names here).
GROUP_FLOORED = [n for n, op in OPERATORS.items() if getattr(op, "min_in_per_group", 1) > 1]
NORMS = [n for n, op in OPERATORS.items() if isinstance(op, Normalization)]
INDEXED_SCANS = [n for n, op in OPERATORS.items() if isinstance(op, Scan) and op.with_indices]


def test_the_rules_have_operators():
    """Each rule is exercised (the transposed convolutions, the norms, CumMax and CumMin)."""
    assert GROUP_FLOORED and NORMS and INDEXED_SCANS


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("op", GROUP_FLOORED)
def test_transposed_convolutions_keep_enough_input_channels_per_group(op, window):
    nodes = list(solved_nodes(op, window))
    assert nodes
    floor = OPERATORS[op].min_in_per_group
    assert floor == MIN_TRANSPOSED_IN_PER_GROUP
    assert all(n["params"]["in_per_group"] >= floor for n, _ in nodes)


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("op", NORMS)
def test_normalisations_reduce_a_bounded_number_of_elements(op, window):
    nodes = list(solved_nodes(op, window))
    assert nodes
    norm = OPERATORS[op]
    assert all(math.prod(norm.reduced(shapes[n["inputs"][0]], n["params"])) <= MAX_REDUCED for n, shapes in nodes)


@pytest.mark.parametrize("window", WINDOWS)
@pytest.mark.parametrize("op", INDEXED_SCANS)
def test_innermost_scans_with_indices_are_long_enough(op, window):
    innermost = [(n, shapes[n["inputs"][0]]) for n, shapes in solved_nodes(op, window, 60)
                 if n["params"]["dim"] == len(shapes[n["inputs"][0]]) - 1]
    assert innermost  # the rule is exercised
    assert all(shape[-1] >= MIN_INNERMOST_SCAN for _, shape in innermost)
