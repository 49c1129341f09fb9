"""Per-operator tests, driven by the registry: adding an operator adds its tests."""
from __future__ import annotations


import pytest

from generator_core import OPERATORS, generate
from helpers import HI, LO, level0, ops_of, run_program, spec

# The original catalogue's 61 names: a fixed historical fact, so the list stays frozen. It is
# checked as a subset of the registry on purpose: removing or renaming one of them fails, while
# adding an operator needs no edit here (its tests come from the parametrisation over OPERATORS).
ORIGINAL_61 = """
Add Sub Mul Div Maximum Minimum Lerp Matmul Bmm Sum Mean Max Min ArgMax ArgMin Var Norm
ReLU LeakyReLU Sigmoid Tanh Softmax LogSoftmax Swish GELU SELU Hardsigmoid Softplus Softsign
ELU HardTanh LogSigmoid Clamp Abs Cos Sin Exp2 BatchNorm LayerNorm GroupNorm InstanceNorm
AvgPool1d AvgPool2d AvgPool3d MaxPool1d MaxPool2d MaxPool3d Conv1d Conv2d Conv3d
ConvTranspose1d ConvTranspose2d ConvTranspose3d Transpose Triu Tril Cat Stack CumSum CumMax CumMin
""".split()
FAMILIES = {"elementwise", "activation", "reduction", "linalg", "norm", "conv", "pool", "layout", "scan"}


def test_registry_keeps_the_original_61_operators_sorted():
    """Every one of the original's 61 names is still registered (more may be), in sorted order."""
    assert len(ORIGINAL_61) == len(set(ORIGINAL_61)) == 61
    assert not set(ORIGINAL_61) - set(OPERATORS), f"removed or renamed: {sorted(set(ORIGINAL_61) - set(OPERATORS))}"
    assert list(OPERATORS) == sorted(OPERATORS)


@pytest.mark.parametrize("name", list(OPERATORS))
def test_operator_metadata(name):
    """Every operator names itself, belongs to a known family and describes itself."""
    op = OPERATORS[name]
    entry = op.catalogue_entry()
    assert op.name == entry["name"] == name
    assert op.family in FAMILIES and entry["category"] == op.family
    assert op.arity in (1, 2, 3) and set(op.input_ranks) <= {1, 2, 3, 4, 5}
    assert op.flops_per_element >= 0


@pytest.mark.parametrize("name", list(OPERATORS))
def test_level0_sample_validates_inside_window(name):
    """A level-0 sample of each op validates on CPU with FLOPs inside its (possibly relaxed) window."""
    s = level0(name)
    assert s.ops == [name] and s.validation is not None and s.validation.passed
    assert s.validation.device == "cpu"
    assert s.min_flops <= s.flops <= s.max_flops == HI
    if s.flops_window_relaxed:  # only when the window is out of reach: 0-FLOP ops or a lowered floor
        assert OPERATORS[name].flops_per_element == 0 or s.flops < LO
        assert s.min_flops < LO
    else:
        assert s.min_flops == LO
    assert sum(s.flops_by_op) == s.flops
    assert len(s.flops_by_op) == len(s.graph["nodes"])


@pytest.mark.parametrize("name", list(OPERATORS))
def test_executed_outputs_match_solved_shapes(name):
    """Running the rendered program ourselves yields the sample's output shapes, finite."""
    s = level0(name)
    outputs = run_program(s.pytorch)
    assert [list(o.shape) for o in outputs] == s.output_shapes
    assert [o.shape for o in s.validation.outputs] == s.output_shapes


@pytest.mark.parametrize("name", list(OPERATORS))
def test_rendered_code_is_device_neutral(name):
    """Rendered code never pins a device (no `.cuda(` and no `device=`)."""
    code = level0(name).pytorch
    assert code.startswith("import torch\n")
    assert ".cuda(" not in code and "device=" not in code


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
@pytest.mark.parametrize("name", list(OPERATORS))
def test_half_precision_sample_validates_on_cpu(name, dtype):
    """Every op generates and validates on CPU in float16 and bfloat16, with that dtype in the code."""
    s = level0(name, dtype)
    assert s.dtype == dtype and s.validation.passed
    assert f"dtype=torch.{dtype}" in s.pytorch


@pytest.mark.parametrize("name", ops_of("conv", "pool"))
def test_solver_encodes_pytorch_shape_rules(name):
    """Windowed ops: no attempt is rejected by a PyTorch exception (the CP-SAT model knows the shape rules)."""
    samples = [generate(spec(op_sequence=[name], seed=seed), seed) for seed in range(4)]
    raised = [r for s in samples for r in s.rejected if "Error" in r.split(": ")[1]]
    assert not raised, raised
