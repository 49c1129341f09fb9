"""Convolution parameters are varied: padding 0, dilation > 1, groups > 1, all spatial ranks."""
from __future__ import annotations

import pytest

from generator_core import generate
from helpers import ops_of, spec, tensor_shapes

CONVS = ops_of("conv")


@pytest.fixture(scope="module")
def conv_nodes() -> list[tuple[dict, dict]]:
    """(node, tensor shapes) of level-0 samples of every conv op over several seeds and indices."""
    found = []
    for name in CONVS:
        for seed in range(3):
            for index in range(2):
                s = generate(spec(op_sequence=[name], seed=seed, validate=False), index)
                found += [(n, tensor_shapes(s.graph)) for n in s.graph["nodes"] if n["op"] == name]
    return found


def test_padding_dilation_and_groups_all_vary(conv_nodes):
    """Across conv samples, padding 0, dilation > 1 and groups > 1 each occur at least once."""
    params = [node["params"] for node, _ in conv_nodes]
    assert any(p["padding"] == 0 for p in params)
    assert any(p["dilation"] > 1 for p in params)
    assert any(p["groups"] > 1 for p in params)


def test_every_spatial_rank_occurs(conv_nodes):
    """Conv outputs of 1, 2 and 3 spatial axes all occur."""
    assert {len(node["shape"]) - 2 for node, _ in conv_nodes} == {1, 2, 3}


def test_conv_params_are_consistent_with_shapes(conv_nodes):
    """Each conv's channels split evenly into its groups, its weight has the kernel on every
    axis, and its bias, when it has one, a value per output channel."""
    for node, shapes in conv_nodes:
        p = node["params"]
        x, w, *bias = (shapes[name] for name in node["inputs"])
        assert x[1] == p["groups"] * p["in_per_group"] and node["shape"][1] == p["groups"] * p["out_per_group"]
        assert w[2:] == [p["kernel_size"]] * (len(x) - 2)
        assert bias in ([], [[node["shape"][1]]])
