"""Levels pick operators as documented; topology shapes the graph; filters are honoured."""
from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from generator_core import OPERATORS, generate
from generator_core.draws import reach_key, combination, draw_weights
from generator_core.spec import LEVEL_OPS
from helpers import HI, LO, spec
from service.cli import main

POOL = list(OPERATORS)
DEFAULT_WINDOW = {"min_flops": 2**34, "max_flops": 2**35}  # GenerationSpec's
N = len(POOL)


def catalogue_nodes(sample) -> list[dict]:
    """Graph nodes that are catalogue operators (not the reshape adapters wiring inserts)."""
    return [n for n in sample.graph["nodes"] if n["op"] in OPERATORS]


@pytest.mark.parametrize("index", [0, 7, 60, 61, 130])
def test_level0_cycles_the_pool(index):
    """Level 0 index i uses pool[i % n]."""
    s = generate(spec(level=0, validate=False), index)
    assert s.ops == [POOL[index % N]] and [n["op"] for n in catalogue_nodes(s)] == s.ops


@pytest.mark.parametrize("index", [0, 1, 60, 200, N * N + 3])
def test_level1_sample_holds_its_drawn_pair(index):
    """A level-1 sample's operators are the pair its index draws, and its graph holds them."""
    s = generate(spec(level=1, validate=False), index)
    assert s.ops == [op.name for op in combination(spec(level=1), index)]
    assert [n["op"] for n in catalogue_nodes(s)] == s.ops


def test_level1_walks_a_seeded_permutation_of_all_ordered_pairs():
    """Every block of N*N consecutive indices covers each ordered pair once, in an order of
    its own; the order depends on the seed, and a short prefix is spread over the pool."""
    def pairs(seed, start, count):
        return [tuple(op.name for op in combination(spec(level=1, seed=seed), i)) for i in range(start, start + count)]

    first, second = pairs(0, 0, N * N), pairs(0, N * N, N * N)
    everything = {(a, b) for a in POOL for b in POOL}
    assert set(first) == set(second) == everything and len(first) == len(second) == N * N
    assert first != second
    assert pairs(1, 0, 80) != first[:80]
    starts = Counter(a for a, _ in first[:80])
    assert len(starts) >= 30 and max(starts.values()) <= 6  # in pool order: 1 distinct, 61 of 80 Abs


@pytest.mark.parametrize("window", [DEFAULT_WINDOW, {"min_flops": LO, "max_flops": HI}], ids=["default", "small"])
def test_levels_draw_independently(window):
    """Under one seed the level-3 operators of an index do not start with its level-2 ones
    (they did for every index when levels shared one random stream)."""
    shared = sum(
        [op.name for op in combination(spec(level=3, **window), i)][:3]
        == [op.name for op in combination(spec(level=2, **window), i)]
        for i in range(200))
    assert shared <= 2


def test_small_window_draws_are_uniform_in_share_and_position():
    """At a window every operator reaches, level-2 draws give each operator its share
    (within 40% over 3,000 draws, 114 expected) and every operator is drawn first and last."""
    lists = [[op.name for op in combination(spec(level=2, seed=5), i)] for i in range(3000)]
    counts = Counter(name for ops in lists for name in ops)
    expected = 3 * len(lists) / N
    assert set(counts) == set(POOL)
    assert all(0.6 * expected <= c <= 1.4 * expected for c in counts.values()), counts.most_common()[::-1][:3]
    assert {ops[0] for ops in lists} == {ops[-1] for ops in lists} == set(POOL)


def test_default_window_draws_give_carriers_no_more_than_their_bound():
    """At the default window each level-2 program needs one operator that reaches 2**34
    alone (a carrier): the anchor draw gives carriers n/(h*k) of uniform and the others
    (k-1)/k * n/(n-h), the least uneven shares possible, not the 2.7x a redraw filter gave."""
    s = spec(level=2, **DEFAULT_WINDOW)
    carriers, _ = draw_weights(tuple(POOL), 3, reach_key(s))
    h = len(carriers)
    lists = [[op.name for op in combination(s, i)] for i in range(3000)]
    counts = Counter(name for ops in lists for name in ops)
    expected = 3 * len(lists) / N
    carrier_share = sum(counts[c] for c in carriers) / (h * expected)
    other_share = sum(c for name, c in counts.items() if name not in carriers) / ((N - h) * expected)
    assert all(any(name in carriers for name in ops) for ops in lists)
    assert carrier_share == pytest.approx(N / (h * 3), rel=0.15)
    assert other_share == pytest.approx(2 / 3 * N / (N - h), rel=0.1)


@pytest.mark.parametrize("level", [2, 3, 4])
def test_levels_2_to_4_have_3_5_10_ops(level):
    """Levels 2, 3, 4 draw 3, 5 and 10 operators and the graph holds exactly those."""
    for index in range(3):
        s = generate(spec(level=level, validate=False), index)
        assert len(s.ops) == LEVEL_OPS[level] == {2: 3, 3: 5, 4: 10}[level]
        assert [n["op"] for n in catalogue_nodes(s)] == s.ops
        assert s.level == s.difficulty == level


def test_ops_allow_list_is_honoured():
    """With `ops`, every drawn operator is in the allow-list (levels 0, 1 and 2)."""
    allowed = ["Add", "ReLU", "Matmul", "Softmax"]
    for level in (0, 1, 2):
        for index in range(6):
            s = generate(spec(level=level, ops=allowed, validate=False), index)
            assert set(s.ops) <= set(allowed)
    assert generate(spec(level=0, ops=allowed, validate=False), 5).ops == [sorted(allowed)[5 % 4]]


def test_exclude_ops_is_honoured():
    """Excluded operators never appear, and level 0 cycles the remaining pool."""
    excluded = [n for n, op in OPERATORS.items() if op.family in ("conv", "pool")]
    left = [n for n in POOL if n not in excluded]
    for index in range(10):
        s = generate(spec(level=2, exclude_ops=excluded, validate=False), index)
        assert not set(s.ops) & set(excluded)
    assert generate(spec(level=0, exclude_ops=excluded, validate=False), 3).ops == [left[3]]


def test_start_index_is_honoured(tmp_path):
    """`generate --start_idx 3` writes the samples of indices 3 and 4, equal to the library's."""
    out = tmp_path / "s.jsonl"
    rc = main(["generate", "--output_file", str(out), "--level", "2", "--target_count", "2",
               "--start_idx", "3", "--seed", "7", "--min_flops", str(LO), "--max_flops", str(HI), "--no-validate"])
    assert rc == 0
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert [line["index"] for line in lines] == [3, 4]
    for line in lines:
        assert line["pytorch"] == generate(spec(level=2, seed=7, validate=False), line["index"]).pytorch


@pytest.mark.parametrize("level", [2, 3, 4])
def test_chain_topology_is_a_chain(level):
    """Chain: each node reads the previous node's output first, and there is exactly one output."""
    for index in range(5):
        s = generate(spec(level=level, topology="chain", validate=False), index)
        nodes = s.graph["nodes"]
        for prev, node in zip(nodes, nodes[1:]):
            assert node["inputs"][0] == prev["output"]
        assert s.graph["outputs"] == [nodes[-1]["output"]] and len(s.output_shapes) == 1


def test_dag_topology_has_fan_out_and_several_outputs():
    """DAG: across 60 level-3 samples, some have several outputs and some tensor feeds two nodes."""
    several_outputs = fan_out = 0
    for index in range(60):
        s = generate(spec(level=3, validate=False), index)
        several_outputs += len(s.graph["outputs"]) > 1
        reads = Counter(name for n in s.graph["nodes"] for name in set(n["inputs"]))
        fan_out += any(count >= 2 for count in reads.values())
    assert several_outputs >= 1 and fan_out >= 1


def test_1000_level2_samples_have_distinct_ids():
    """1000 level-2 samples (seed 7) have 1000 distinct ids, within 60 s."""
    start = time.perf_counter()
    ids = {generate(spec(level=2, seed=7, validate=False), index).id for index in range(1000)}
    assert len(ids) == 1000
    assert time.perf_counter() - start < 60
