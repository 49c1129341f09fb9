"""Levels pick operators as documented; topology shapes the graph; filters are honoured."""
from __future__ import annotations

import json
import time
from collections import Counter

import pytest

from generator_core import OPERATORS, generate
from generator_core.spec import LEVEL_OPS
from helpers import HI, LO, spec
from service.cli import main

POOL = list(OPERATORS)
N = len(POOL)


def catalogue_nodes(sample) -> list[dict]:
    """Graph nodes that are catalogue operators (not the reshape adapters wiring inserts)."""
    return [n for n in sample.graph["nodes"] if n["op"] in OPERATORS]


@pytest.mark.parametrize("index", [0, 7, 60, 61, 130])
def test_level0_cycles_the_pool(index):
    """Level 0 index i uses pool[i % 61]."""
    s = generate(spec(level=0, validate=False), index)
    assert s.ops == [POOL[index % N]] and [n["op"] for n in catalogue_nodes(s)] == s.ops


@pytest.mark.parametrize("index", [0, 1, 60, 61, 62, 200, N * N + 3])
def test_level1_walks_ordered_pairs(index):
    """Level 1 index i uses (pool[(i // N) % N], pool[i % N])."""
    s = generate(spec(level=1, validate=False), index)
    assert s.ops == [POOL[(index // N) % N], POOL[index % N]]
    assert [n["op"] for n in catalogue_nodes(s)] == s.ops


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
