"""KernelBench's level-1 and level-2 problems, as tcgen operator chains, yield gradeable samples.

The chains are generator_core.kernelbench_problems' table: this file is the list of chains
the issue asks for, run as `op_sequence` at the small window on the CPU.
"""
from __future__ import annotations

import pytest

from generator_core import OPERATORS, generate
from generator_core.kernelbench_problems import DROPPED, LEVEL1, LEVEL2, UNSUPPORTED, chains
from helpers import spec


def test_the_table_has_every_problem_of_both_levels_once():
    """Every problem of both levels is a chain or, with its reason, unsupported."""
    for table in ({**LEVEL1, **UNSUPPORTED}, LEVEL2):
        assert sorted(int(name.split("_")[0]) for name in table) == list(range(1, 101))
    assert not set(UNSUPPORTED) & set(LEVEL1)


def test_a_level2_chain_has_one_operator_per_name_part_but_dropout():
    for name, chain in LEVEL2.items():
        parts = [p for p in name.split("_")[1:] if p not in DROPPED]
        assert len(chain) == len(parts), name


def test_every_chain_names_catalogue_operators():
    unknown = {op for chain in chains() for op in chain} - set(OPERATORS)
    assert not unknown


@pytest.mark.parametrize("chain", chains(), ids="-".join)
def test_kernelbench_chain_yields_a_validated_gradeable_sample(chain):
    s = generate(spec(op_sequence=list(chain)), 0)
    assert s.ops == list(chain)
    assert s.validation.passed and s.grading is not None and not s.flops_window_relaxed
