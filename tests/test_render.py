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
    # KernelBench's layout with weights: nn.Parameters made in __init__ from get_init_inputs()
    "kernelbench_conv_relu_matmul_seed1": (dict(op_sequence=["Conv2d", "ReLU", "Matmul"], seed=1,
                                                format="kernelbench"), 0),
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
    """A chain has one sink, so its fused_operator and kernelbench renderings share graph, id and
    body; in KernelBench's format the weights are the Model's parameters."""
    fields = dict(op_sequence=["Conv2d", "ReLU", "Matmul"], seed=1, topology="chain", validate=False)
    fused = generate(spec(**fields), 0)
    bench = generate(spec(format="kernelbench", **fields), 0)
    assert fused.graph == bench.graph and fused.id == bench.id
    weights = [t["name"] for t in bench.graph["inputs"] if t["weight"]]
    assert weights and "class Model(nn.Module)" in bench.pytorch
    for name in weights:
        assert f"self.{name} = nn.Parameter(" in bench.pytorch and f"{name} = torch.empty" not in bench.pytorch
    for node in fused.graph["nodes"]:
        assert f"{node['output']} = " in bench.pytorch


@pytest.mark.parametrize("level", [2, 3, 4])
def test_kernelbench_programs_have_one_output(level):
    """KernelBench's evaluator compares `output.shape`: a program in its format returns one
    tensor, at every level (the DAG wiring of the same index often has several sinks)."""
    for index in range(6):
        sample = generate(spec(level=level, seed=7, format="kernelbench", validate=False), index)
        assert len(sample.output_shapes) == 1 and sample.graph["outputs"] == [sample.graph["nodes"][-1]["output"]]
        assert run_program(sample.pytorch, "kernelbench")[0].shape == tuple(sample.output_shapes[0])
