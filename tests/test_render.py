"""Rendering is stable: fixed (spec, index) pairs match checked-in golden programs, which run.

Regenerate the golden files after an intended change with: TCGEN_UPDATE_GOLDEN=1 pytest tests/test_render.py
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from generator_core import generate
from helpers import run_program, spec

GOLDEN = Path(__file__).with_name("golden")
CASES = {
    "level1_index5": (dict(level=1), 5),
    "level2_seed3_index4": (dict(level=2, seed=3), 4),
    "kernelbench_level2_seed3_index4": (dict(level=2, seed=3, format="kernelbench"), 4),
    # weights drawn like torch.nn's, and the full-float32 pin of a program with a convolution
    "conv_relu_matmul_seed1": (dict(op_sequence=["Conv2d", "ReLU", "Matmul"], seed=1), 0),
}


def golden_check(name: str, text: str) -> None:
    """Compare `text` with tests/golden/<name>.py, or rewrite it when TCGEN_UPDATE_GOLDEN=1."""
    path = GOLDEN / f"{name}.py"
    if os.environ.get("TCGEN_UPDATE_GOLDEN") == "1":
        GOLDEN.mkdir(exist_ok=True)
        path.write_text(text)
    assert path.exists(), f"{path} missing: run with TCGEN_UPDATE_GOLDEN=1 to create it"
    assert text == path.read_text(), f"{path.name} differs: rendering changed (TCGEN_UPDATE_GOLDEN=1 accepts it)"


@pytest.mark.parametrize("name", list(CASES))
def test_rendered_program_matches_golden(name):
    """sample.pytorch for a fixed (spec, index) is byte-identical to its golden file."""
    fields, index = CASES[name]
    golden_check(name, generate(spec(validate=False, **fields), index).pytorch)


@pytest.mark.parametrize("name", list(CASES))
def test_golden_program_runs(name):
    """Each golden program executes in its own format and returns the outputs its graph promises."""
    fields, index = CASES[name]
    code = (GOLDEN / f"{name}.py").read_text()
    outputs = run_program(code, fields.get("format", "fused_operator"))
    assert outputs and all(o.isfinite().all() for o in outputs if o.is_floating_point())
    assert [list(o.shape) for o in outputs] == generate(spec(validate=False, **fields), index).output_shapes


def test_same_graph_renders_in_both_formats():
    """The fused_operator and kernelbench renderings of one (spec, index) share graph, id and body."""
    fused = generate(spec(level=2, seed=3, validate=False), 4)
    bench = generate(spec(level=2, seed=3, validate=False, format="kernelbench"), 4)
    assert fused.graph == bench.graph and fused.id == bench.id
    assert "class Model(nn.Module)" in bench.pytorch and "def get_init_inputs():" in bench.pytorch
    for node in fused.graph["nodes"]:
        assert f"{node['output']} = " in bench.pytorch
