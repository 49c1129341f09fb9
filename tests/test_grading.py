"""The grading contract: every rule rejects what it must (each test fails without its rule),
and every operator's sample meets the contract when re-checked independently (bench.grading)."""
from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.grading import recheck
from generator_core import OPERATORS, Sample, generate, grading
from generator_core.ops.affine import Linear
from generator_core.ops.conv import Convolution
from generator_core.ops.linalg import MatrixProduct
from generator_core.render import PIN_FULL_FLOAT32
from generator_core.validate import validate_program
from helpers import level0, spec


def program(inputs: dict[str, list[int]], nodes: list[tuple[str, str, list[str], str]]):
    """A hand-written program in tcgen's own form: (code, graph, steps) from input shapes and
    (op, output, inputs, expression) nodes. The last node is the output."""
    lines = [f"    {name} = torch.randn({shape}, dtype=torch.float32)" for name, shape in inputs.items()]
    body = [f"    {out} = {expr}" for _, out, _, expr in nodes]
    names = ", ".join(inputs)
    code = (f"import torch\n\n\ndef get_inputs():\n" + "\n".join(lines) + f"\n    return [{names}]\n\n\n"
            f"def fused_operator({names}):\n" + "\n".join(body) + f"\n    return [{nodes[-1][1]}]\n")
    graph = {"inputs": [{"name": n, "shape": s, "weight": False} for n, s in inputs.items()],
             "nodes": [{"op": op, "inputs": ins, "output": out, "shape": [], "params": {"dim": 1}}
                       for op, out, ins, _ in nodes],
             "outputs": [nodes[-1][1]]}
    return code, graph, [expr for *_, expr in nodes]


def verdict(inputs, nodes, shape, seed=0, traced=True):
    code, graph, steps = program(inputs, nodes)
    extra = {"graph": graph, "steps": steps} if traced else {}
    return validate_program(code, [shape], fmt="fused_operator", device="cpu", seed=seed, **extra)


X = {"x": [64, 32]}


def test_a_sound_program_passes_with_its_contract():
    """A program that meets every rule passes and states the contract it was proved against."""
    v = verdict(X, [("Tanh", "y", ["x"], "torch.tanh(x * 2.0)")], [64, 32])
    assert v.reason is None
    g = v.grading
    assert (g.atol, g.rtol, g.reference_error, g.loose_tolerance) == (1e-4, 1e-4, 0.5, 1e-2)
    assert len(g.input_seeds) == grading.INPUT_SEEDS["float32"] >= 3 and g.input_seeds[0] == 0
    assert g.exact_outputs == [] and g.precision["cudnn_allow_tf32"] is True


# -- numerics ------------------------------------------------------------------------------
def test_numerics_rejects_a_reference_far_from_float64():
    """float32 cancellation ((sin(x) + 1e4) - 1e4 loses 14 bits) is rejected; float64 keeps them."""
    v = verdict(X, [("Add", "y", ["x"], "torch.sub(torch.add(torch.sin(x), 1e4), 1e4)")], [64, 32], traced=False)
    assert v.reason.startswith("numerics: output 0") and v.grading is None


def test_half_types_are_held_to_float64_rounded_to_their_dtype():
    """bfloat16 outputs are compared with float64 rounded to bfloat16 at the whole tolerance:
    one rounding passes, a cancellation that loses every bit does not."""
    ok = grading.numerics([torch.tensor([1.0 + 2**-7], dtype=torch.bfloat16)], [torch.tensor([1.0 + 2**-8 + 1e-6], dtype=torch.float64)], "bfloat16")
    assert ok is None
    bad = grading.numerics([torch.tensor([1.0], dtype=torch.bfloat16)], [torch.tensor([1.05], dtype=torch.float64)], "bfloat16")
    assert bad.startswith("numerics")


# -- ties ----------------------------------------------------------------------------------
def test_ties_reject_argmax_over_tied_values():
    """ArgMax over rounded values ties exactly in float32 and float64 alike: only the margin
    rule catches it."""
    v = verdict(X, [("Round", "r", ["x"], "torch.round(x)"),
                    ("ArgMax", "y", ["r"], "torch.argmax(r, dim=1, keepdim=False)")], [64])
    assert v.reason is not None and v.reason.startswith("tie:") and "node 1 (ArgMax)" in v.reason


def test_ties_pass_argmax_with_a_margin_and_mark_it_exact():
    """An ArgMax over a few slices of distinct values passes; its output is compared exactly."""
    v = verdict({"x": [32, 4]}, [("ArgMax", "y", ["x"], "torch.argmax(x, dim=1)")], [32])
    assert v.reason is None and v.grading.exact_outputs == [0]


def test_an_index_of_a_graph_input_needs_no_margin():
    """Exact ties in a graph input's values are the same for every implementation (the first
    index wins), so ties() checks the margin only where the values were computed."""
    x = torch.tensor([[1.0, 1.0, 0.5], [0.25, 2.0, 2.0]], dtype=torch.bfloat16)
    env = {"x": x, "y": torch.argmax(x, dim=1)}
    env64 = {"x": x.double(), "y": torch.argmax(x.double(), dim=1)}
    nodes = [{"op": "ArgMax", "inputs": ["x"], "output": "y", "params": {"dim": 1}}]
    assert grading.ties(nodes, env, env64, "bfloat16", ["x"]) is None
    assert grading.ties(nodes, env, env64, "bfloat16", []).startswith("tie:")


@pytest.mark.parametrize("name", [n for n, op in OPERATORS.items() if getattr(op, "index_output", False)])
def test_in_half_types_index_operators_read_graph_inputs(name):
    """Values computed in bfloat16 tie or swap where a float32 candidate separates them, so
    a half-type index operator reads a graph input (directly or reshaped); in float32 it
    reads computed values too."""
    def reads_raw(s):
        g = s.graph
        raw = {t["name"] for t in g["inputs"]}
        for node in g["nodes"]:
            if node["op"] == "Reshape" and node["inputs"][0] in raw:
                raw.add(node["output"])
            if node["op"] == name:
                return node["inputs"][0] in raw

    runs = {dtype: [reads_raw(generate(spec(op_sequence=["Sin", "Exp2", name], dtype=dtype, validate=False), i))
                    for i in range(6)] for dtype in ("bfloat16", "float32")}
    assert all(runs["bfloat16"]) and not all(runs["float32"])


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_index_operators_are_capped_in_slices(dtype):
    """ArgMax / ArgMin outputs stay within the slice cap that keeps ties rare (per dtype)."""
    from generator_core.ops.reduction import MAX_INDEX_SLICES

    for name in [n for n, op in OPERATORS.items() if getattr(op, "index_output", False)]:
        for index in range(4):
            s = generate(spec(op_sequence=[name], dtype=dtype, validate=False), index)
            assert math.prod(s.output_shapes[0]) <= MAX_INDEX_SLICES[dtype]


# -- trivial answers -----------------------------------------------------------------------
@pytest.mark.parametrize("expr, reason", [
    ("torch.softmax(x, dim=1)", "trivial: zeros pass"),  # 8192 values: every output <= ~0.005
    ("torch.sigmoid(torch.softmax(x, dim=1))", "trivial: its mean passes"),  # all about 0.5
    ("torch.add(x, torch.sin(x) * 1e-3)", "trivial: input 0 passes"),
])
def test_trivial_answers_are_rejected(expr, reason):
    v = verdict({"x": [8, 8192]}, [("Op", "y", ["x"], expr)], [8, 8192], traced=False)
    assert v.reason is not None and v.reason.startswith(reason), v.reason


@settings(max_examples=300, deadline=None)
@given(values=st.lists(st.floats(-3, 3), min_size=1, max_size=40), constant=st.floats(-3, 3),
       scale=st.sampled_from([1e-3, 1.0, 1e3]))
def test_a_constant_is_judged_from_the_extremes_as_a_full_comparison_judges_it(values, constant, scale):
    """trivial_answers decides zeros and the mean from an output's min and max: the same
    answer as comparing every element (values near a constant included)."""
    out = torch.tensor([v * scale for v in values] + [constant * scale * (1 + 0.03 * v) for v in values],
                       dtype=torch.float64)
    c = constant * scale
    assert grading._constant_passes(c, float(out.min()), float(out.max())) == \
        grading._close(out, torch.full_like(out, c), grading.LOOSE_TOLERANCE * grading.PROOF_MARGIN)


@pytest.mark.parametrize("differs_at", [None, 0, 12345, 2**20 - 1])
def test_a_sampled_comparison_decides_as_the_full_one(differs_at):
    """Large tensors are compared on a sample first; one differing element anywhere (on the
    sample's stride or not) still makes them unequal, and equal ones stay equal."""
    a = torch.randn(2**20, generator=torch.Generator().manual_seed(0))
    b = a * (1 + 1e-3)
    if differs_at is not None:
        b[differs_at] += 1
    assert grading._loosely_equal(a, b) == (differs_at is None)


def test_an_output_constant_for_any_checked_seed_is_rejected():
    """Outputs are judged for every input seed: relu(x - t) with t just below the first seed's
    maximum is constant (all 0) for a later seed, and rejected though the first seed passes."""
    def maxima(seed):
        out = []
        for s in grading.input_seeds(seed):
            torch.manual_seed(s)
            out.append(float(torch.randn([4, 8]).max()))
        return out

    seed = next(s for s in range(500) if min(maxima(s)[1:]) < maxima(s)[0] - 0.7)
    threshold = maxima(seed)[0] - 0.5
    ok = verdict({"x": [4, 8]}, [("ReLU", "y", ["x"], f"torch.relu(torch.sub(x, {threshold}))")], [4, 8],
                 seed=seed, traced=False)
    assert ok.reason is not None and "constant" in ok.reason, ok.reason


# -- padding -------------------------------------------------------------------------------
@pytest.mark.parametrize("nodes", [
    [("Clamp", "y", ["x"], "torch.clamp(x, min=-10.0, max=10.0)"), ("Sin", "z", ["y"], "torch.sin(y)")],
    [("Abs", "a", ["x"], "torch.abs(x)"), ("Maximum", "y", ["a", "x"], "torch.maximum(a, x)"),
     ("Sin", "z", ["y"], "torch.sin(y)")],
    [("Sin", "s", ["x"], "torch.sin(x)"), ("LayerNorm", "y", ["s"], "torch.nn.functional.layer_norm(s, [2048]) * 0.0 + s"),
     ("Cos", "z", ["y"], "torch.cos(y)")],
])
def test_a_node_that_changes_nothing_is_rejected(nodes):
    """clamp over the input's whole range, maximum(abs(x), x), a node equal to its input."""
    v = verdict({"x": [8, 2048]}, nodes, [8, 2048])
    assert v.reason is not None and v.reason.startswith("removable:"), v.reason


def test_removal_is_only_checked_with_the_program_graph():
    """Without graph and steps (hand-written code) the padding rule cannot run: the same
    program passes, so the rejection above is the rule's."""
    nodes = [("Clamp", "y", ["x"], "torch.clamp(x, min=-10.0, max=10.0)"), ("Sin", "z", ["y"], "torch.sin(y)")]
    assert verdict({"x": [8, 2048]}, nodes, [8, 2048], traced=False).reason is None


# -- precision -----------------------------------------------------------------------------
def test_float32_convolution_programs_pin_full_float32():
    """A float32 program with a convolution sets cudnn.allow_tf32 = False itself; validation
    records that flag, and leaves the process's flag as it found it."""
    torch.backends.cudnn.allow_tf32 = True  # PyTorch's default (an earlier test may have run a pinned program)
    sample = generate(spec(op_sequence=["Conv2d", "Tanh"], seed=1), 0)
    assert PIN_FULL_FLOAT32 in sample.pytorch
    assert sample.grading.precision["cudnn_allow_tf32"] is False
    assert torch.backends.cudnn.allow_tf32 is True
    half = generate(spec(op_sequence=["Conv2d", "Tanh"], seed=1, dtype="bfloat16", validate=False), 0)
    assert PIN_FULL_FLOAT32 not in half.pytorch and PIN_FULL_FLOAT32 not in level0("Tanh").pytorch


# -- every operator ------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(OPERATORS))
def test_operator_sample_meets_the_contract_when_rechecked(name):
    """Each operator's validated sample, re-checked by bench.grading's own code on five fresh
    input seeds: float64, trivial answers, constant outputs, removable nodes, index ties."""
    sample = level0(name)
    assert sample.grading is not None and sample.grading.input_seeds
    result = recheck(sample.model_dump_json(), "cpu", with_compile=False)
    failed = [rule for rule in ("float64", "trivial", "constant", "removable", "index_ties") if result[rule] is False]
    assert not failed, f"{name}: {failed}"
    index_op = getattr(OPERATORS[name], "index_output", False)
    assert sample.grading.exact_outputs == ([0] if index_op else [])


@pytest.mark.parametrize("name", [n for n, op in OPERATORS.items() if isinstance(op, (Convolution, MatrixProduct))])
def test_weights_are_drawn_like_torch_nn(name):
    """Weights are uniform in +-1/sqrt(fan_in), fan_in as torch.nn counts it (a conv weight's
    size(1) x kernel, nn.Linear's in_features; a matmul operand's K, as nn.Linear's in_features:
    size(-2) of a (K, N) operand, size(-1) of one stored (N, K) and read transposed);
    a bias (Linear's, a convolution's on about half the nodes) takes its weight's bound, as
    torch.nn's reset_parameters does; all are marked as weights in the graph."""
    op, with_bias = OPERATORS[name], set()
    for index in range(8):
        sample = generate(spec(op_sequence=[name], validate=False), index)
        inputs = {t["name"]: t for t in sample.graph["inputs"]}
        weight, *bias = [inputs[n] for n in sample.graph["nodes"][0]["inputs"][1:]]
        assert weight["weight"] and all(t["weight"] for t in bias)
        shape = weight["shape"]
        transposed = f"{weight['name']}.transpose(-2, -1)" in sample.pytorch
        fan_in = (torch.nn.init._calculate_fan_in_and_fan_out(torch.empty(shape))[0]
                  if op.family == "conv" or isinstance(op, Linear) else shape[-1] if transposed else shape[-2])
        bound = float(f"{1 / math.sqrt(fan_in):.6g}")
        for t in [weight, *bias]:
            assert f"{t['name']} = torch.empty({t['shape']}, dtype=torch.float32).uniform_(-{bound}, {bound})" \
                in sample.pytorch
        assert [t["shape"] for t in bias] in ([], [[sample.output_shapes[0][1 if op.family == "conv" else -1]]])
        with_bias.add(bool(bias))
    assert with_bias == ({True, False} if op.family == "conv" else {op.arity == 3})


@pytest.mark.parametrize("fmt", ["fused_operator", "kernelbench"])
def test_bias_add_draws_a_standard_normal_parameter(fmt):
    """BiasAdd's bias is KernelBench's nn.Parameter(torch.randn(bias_shape)): one value per
    channel (axis 1), broadcast over the axes after it, a weight of the graph (a constructor
    shape in KernelBench's format)."""
    for index in range(3):
        sample = generate(spec(op_sequence=["BiasAdd"], format=fmt), index)
        x, bias = sample.graph["inputs"]
        assert not x["weight"] and bias["weight"]
        assert bias["shape"] == [x["shape"][1]] + [1] * (len(x["shape"]) - 2)
        if fmt == "kernelbench":
            assert (f"self.{bias['name']} = nn.Parameter(torch.randn({bias['name']}_shape, dtype=torch.float32, "
                    "device=device()), requires_grad=False)") in sample.pytorch
            assert f"return [{bias['shape']}]" in sample.pytorch
        else:
            assert f"{bias['name']} = torch.randn({bias['shape']}, dtype=torch.float32)" in sample.pytorch


def test_grading_is_part_of_the_deterministic_bytes():
    """The same spec and index give the same bytes, grading included; validation off gives none."""
    a = generate(spec(level=3, seed=5), 2).model_dump_json()
    assert a == generate(spec(level=3, seed=5), 2).model_dump_json()
    assert Sample.model_validate_json(a).grading.input_seeds
    assert generate(spec(level=3, seed=5, validate=False), 2).grading is None


@pytest.mark.parametrize("why, label", [
    ("attempt 0: numerics: output 0 is 3x 0.5 of the tolerance (0.0001) from float64", "numerics"),
    ("attempt 1: tie: best and second-best values 0x the margin apart at node 1 (ArgMax)", "tie"),
    ("attempt 2: trivial: its mean passes output 0", "trivial"),
    ("attempt 3: removable: node 2 (Clamp) can be replaced by its input tensor_1", "removable"),
])
def test_rejections_are_counted_by_rule(why, label):
    """Each rule's rejections get their own metrics label (tcgen_attempts_rejected_total{reason})."""
    from service.metrics import rejection_reason

    assert rejection_reason(why) == label


def test_half_types_are_proved_on_more_input_seeds():
    """A half-type reference's largest error varies more from seed to seed than float32's,
    so its contract is proved on more seeds (and says which)."""
    half, single = level0("Tanh", "bfloat16").grading, level0("Tanh").grading
    assert len(half.input_seeds) == grading.INPUT_SEEDS["bfloat16"] > len(single.input_seeds) >= 3
