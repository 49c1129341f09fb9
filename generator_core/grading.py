"""The grading contract: what a grader comparing a candidate with a sample may assume, and
the checks that prove it before the sample is returned.

A grader (KernelBench's rule) runs the reference and a candidate on the same random inputs
and passes the candidate when `torch.allclose(ref, cand, atol=tol, rtol=tol)` holds for every
output over several input seeds. A sample is a fair, non-trivial task when:
- numerics: the reference, run in its dtype under PyTorch's default flags, is within half
  the tolerance of a float64 evaluation of the same program, for every input seed checked
  (so an implementation as accurate as the reference keeps half the tolerance for itself);
  in half types within the whole tolerance of float64 rounded to the dtype;
- ties: index outputs (ArgMax / ArgMin, final or feeding later operators) are the same in
  the dtype and in float64, and the best value of every slice beats the second best by a
  margin a correct implementation cannot close;
- trivial answers: zeros, a constant equal to an output's mean, and every same-shaped input
  fail at the loose tolerance, and no output is constant, for every input seed;
- no padding: replacing any node by the identity (one of its same-shaped inputs) changes
  some output beyond the loose tolerance.
Functions here take executed tensors and return a reason (a str that starts with the rule's
name, which metrics count by) or None; validate.py runs the programs.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable

import torch
from generator_core.sample import Grading
from generator_core.seeds import derive_seed

# KernelBench's tolerances: atol = rtol = 1e-4 for float32, 1e-2 for half types.
TOLERANCE = {"float32": 1e-4, "float16": 1e-2, "bfloat16": 1e-2}
# The share of the tolerance the reference may be from float64. Half types: 3/4 of it, from
# float64 correctly rounded to the dtype (the best output of that dtype). Eager bfloat16
# rounds every intermediate to 8 bits: at half the tolerance 37 of 100 level-4 indices were
# given up (seed 5151, 2**16..2**22); at the whole of it none, but on 5 fresh input seeds
# 10 of 100 level-4 samples were then further than the tolerance (at 3/4: 2 given up, 4 further).
REFERENCE_SHARE = {"float32": 0.5, "float16": 0.75, "bfloat16": 0.75}
LOOSE_TOLERANCE = 1e-2  # trivial answers and removed nodes must fail even at this tolerance
# ...and by this factor on the seeds checked, so that they fail on a grader's seeds too (at
# exactly 1e-2, 5 of 300 level 3-4 samples had a node removable or a trivial answer passing
# on other seeds; at twice it, 1 of 500).
PROOF_MARGIN = 4
# Input seeds checked. Half types: 5, since a half-type reference's largest error moves from
# seed to seed by more than float32's. At 3, 2 of 100 level-3 and 4 of 98 level-4 bfloat16
# samples were beyond the tolerance on 5 fresh seeds; at 5, 0 and 2 (seed 5151, 2**16..2**22).
INPUT_SEEDS = {"float32": 3, "float16": 5, "bfloat16": 5}
SAMPLED_ELEMENTS = 2**14  # elements of the quick first pass of a comparison of large tensors
# The best value of every ArgMax / ArgMin slice beats the second best by this share of its
# magnitude: about 32 float32 ulps (fused or reordered float32 arithmetic upstream moves
# values by a few ulps, which cannot flip such an index); in half types, one ulp: distinct
# values (wider margins would reject nearly every half-precision ArgMax).
TIE_MARGIN = {"float32": 4e-6, "float16": 2**-11, "bfloat16": 2**-8}
TIE_FLOOR = 1e-6  # values below this magnitude count as this (a margin, not zero, at zero)
# Operators whose output is an index into their input (compared exactly by graders).
INDEX_OPS = {"ArgMax": True, "ArgMin": False}  # name -> the best value is the largest


def input_seeds(validation_seed: int, dtype: str = "float32") -> list[int]:
    """The input seeds checked: the attempt's validation seed first, then derived ones."""
    return [validation_seed] + [derive_seed(validation_seed, "grading", k) for k in range(1, INPUT_SEEDS[dtype])]


@contextlib.contextmanager
def grader_flags():
    """PyTorch's default precision flags (what a grader's process has), restored afterwards.
    Set before each program loads: a program may pin its own (render.PIN_FULL_FLOAT32),
    and one program's pin must not leak into the next one's check."""
    saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = True, False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def precision_flags() -> dict[str, Any]:
    return {
        "cudnn_allow_tf32": torch.backends.cudnn.allow_tf32,
        "cuda_matmul_allow_tf32": torch.backends.cuda.matmul.allow_tf32,
        "deterministic_algorithms": torch.are_deterministic_algorithms_enabled(),
    }


def contract(dtype: str, seeds: list[int], outputs: list[torch.Tensor], precision: dict[str, Any]) -> Grading:
    tol = TOLERANCE[dtype]
    return Grading(atol=tol, rtol=tol, reference_error=REFERENCE_SHARE[dtype], input_seeds=seeds,
                   exact_outputs=[i for i, out in enumerate(outputs) if not out.is_floating_point()],
                   loose_tolerance=LOOSE_TOLERANCE, tie_margin=TIE_MARGIN[dtype], precision=precision)


def _loosely_equal(a: torch.Tensor, b: torch.Tensor, tol: float = LOOSE_TOLERANCE * PROOF_MARGIN) -> bool:
    """allclose(a, b, tol, tol) in either direction (rtol scaled by the larger magnitude).
    Large tensors are first compared on a strided sample of their elements: nearly every
    comparison here is expected to fail (a removed node, a trivial answer), and a sample
    proves it at a fraction of the cost of a full pass (which still decides every "equal")."""
    if not (a.is_floating_point() and b.is_floating_point()):
        return torch.equal(a, b)
    if a.numel() > 4 * SAMPLED_ELEMENTS and a.is_contiguous() and b.is_contiguous():
        step = a.numel() // SAMPLED_ELEMENTS
        if not _close(a.view(-1)[::step], b.view(-1)[::step], tol):
            return False
    return _close(a, b, tol)


def _close(a: torch.Tensor, b: torch.Tensor, tol: float) -> bool:
    a, b = a.double(), b.double()
    return bool(((a - b).abs() <= tol + tol * torch.maximum(a.abs(), b.abs())).all())


def _constant_passes(constant: float, low: float, high: float, tol: float = LOOSE_TOLERANCE * PROOF_MARGIN) -> bool:
    """_loosely_equal(output, a tensor of `constant`) from the output's extremes alone: the
    excess |a - c| - tol * max(|a|, |c|) falls as an element a rises to c and grows beyond it
    (its slope is at least 1 - tol in size), so it is largest at the smallest or the largest
    element."""
    return all(abs(a - constant) <= tol + tol * max(abs(a), abs(constant)) for a in (low, high))


# -- numerics and ties ---------------------------------------------------------------------
def numerics(outputs: list[torch.Tensor], truth: list[torch.Tensor], dtype: str) -> str | None:
    """Each float output within REFERENCE_SHARE of the tolerance from float64; index outputs equal."""
    tol = TOLERANCE[dtype] * REFERENCE_SHARE[dtype]
    for i, (out, exact) in enumerate(zip(outputs, truth)):
        if not out.is_floating_point():
            if not torch.equal(out, exact):
                return f"tie: index output {i} differs between {dtype} and float64"
            continue
        if out.dtype != torch.float32:  # the best a half-type output can be: float64 correctly rounded
            exact = exact.to(out.dtype).double()
        # |out - float64| / (tol + tol * |float64|), in place: outputs may be GiBs
        ratio = float(exact.sub(out).abs_().div_(exact.abs().mul_(tol).add_(tol)).max())
        if ratio > 1:
            return (f"numerics: output {i} is {ratio:.3g}x {REFERENCE_SHARE[dtype]:g} of the tolerance "
                    f"({TOLERANCE[dtype]:g}) from float64")
    return None


def tie_margin(values: torch.Tensor, dim: int, largest: bool, dtype: str) -> str | None:
    """Every slice's best value beats its second best by TIE_MARGIN of its magnitude."""
    top = values.double().topk(2, dim=dim, largest=largest).values
    best, second = top.select(dim, 0), top.select(dim, 1)
    margin = TIE_MARGIN[dtype] * torch.clamp(best.abs(), min=TIE_FLOOR)
    short = float(((best - second).abs() / margin).min())
    if short < 1:
        return f"tie: best and second-best values {short:.3g}x the margin apart"
    return None


def ties(nodes: list[dict], env: dict[str, torch.Tensor], env64: dict[str, torch.Tensor], dtype: str,
         input_names: list[str] = ()) -> str | None:
    """Every index node (final or not): same indices in the dtype and float64, with a margin
    (measured on the float64 values it reduces) unless it reduces a graph input (reshaped or
    not): values every implementation reads as they are, exact ties included."""
    raw = set(input_names)
    for k, node in enumerate(nodes):
        if node["op"] == "Reshape" and node["inputs"][0] in raw:
            raw.add(node["output"])
        largest = INDEX_OPS.get(node["op"])
        if largest is None:
            continue
        out, x64 = node["output"], env64[node["inputs"][0]]
        if not torch.equal(env[out].long(), env64[out].long()):
            return f"tie: node {k} ({node['op']}) picks other indices in {dtype} than in float64"
        reason = None if node["inputs"][0] in raw else tie_margin(x64, node["params"]["dim"], largest, dtype)
        if reason:
            return f"{reason} at node {k} ({node['op']})"
    return None


# -- trivial answers -----------------------------------------------------------------------
def trivial_answers(outputs: list[torch.Tensor], inputs: list[torch.Tensor],
                    extremes: list[tuple[float, float, float]]) -> str | None:
    """Zeros, the output's mean and each same-shaped input must fail every float output.
    `extremes` holds each output's (min, max, mean), which decide the constants."""
    for i, (out, (low, high, mean)) in enumerate(zip(outputs, extremes)):
        if not out.is_floating_point():
            continue  # an index output is compared exactly; a constant one is rejected already
        if _constant_passes(0.0, low, high):
            return f"trivial: zeros pass output {i}"
        if _constant_passes(torch.tensor(mean, dtype=out.dtype).item(), low, high):  # the mean in the dtype
            return f"trivial: its mean passes output {i}"
        for j, x in enumerate(inputs):
            if x.shape == out.shape and _loosely_equal(out, x):
                return f"trivial: input {j} passes output {i}"
    return None


# -- padding: nodes that change nothing ----------------------------------------------------
@dataclass
class Replay:
    """A program as its steps (one expression per node), evaluated on named tensors: the
    same expressions, in the same order, as the program's own code."""

    input_names: list[str]
    nodes: list[dict]  # graph_json["nodes"]: op, inputs, output, shape, params
    outputs: list[str]
    code: list[Any]  # compiled expressions

    @classmethod
    def of(cls, graph: dict, steps: list[str]) -> Replay:
        code = [compile(expr, f"<tcgen-step-{k}>", "eval") for k, expr in enumerate(steps)]
        return cls([t["name"] for t in graph["inputs"]], graph["nodes"], graph["outputs"], code)

    def named(self, inputs: list[torch.Tensor], weights: dict[str, torch.Tensor] | None = None) -> dict:
        """Every graph input by name: `inputs` are get_inputs()'s, in graph order; `weights`
        the KernelBench Model's parameters (graph inputs that get_inputs() leaves out)."""
        weights = weights or {}
        return dict(zip([n for n in self.input_names if n not in weights], inputs)) | weights

    def run(self, env: dict[str, torch.Tensor], start: int = 0,
            only: Callable[[dict], bool] | None = None) -> dict[str, torch.Tensor]:
        """Evaluates nodes `start`.. into `env` (named tensors, updated in place and returned)."""
        namespace = {"torch": torch}
        for k in range(start, len(self.nodes)):
            node = self.nodes[k]
            if only is None or only(node):
                env[node["output"]] = eval(self.code[k], namespace, env)  # our own rendered steps
        return env


def removable(replay: Replay, env: dict[str, torch.Tensor]) -> str | None:
    """A node that can be replaced by one of its same-shaped inputs with every output still
    within the loose tolerance is padding: the task would reward a program without it."""
    for k, node in enumerate(replay.nodes):
        if node["op"] == "Reshape":  # wiring's rank adapter, not an operator of the task
            continue
        out = env[node["output"]]
        for name in dict.fromkeys(node["inputs"]):
            x = env[name]
            if x.shape != out.shape or x.dtype != out.dtype:
                continue
            changed = {node["output"]}
            trial = dict(env)
            trial[node["output"]] = x

            def downstream(n, changed=changed):
                if any(i in changed for i in n["inputs"]):
                    changed.add(n["output"])
                    return True
                return False

            replay.run(trial, start=k + 1, only=downstream)
            if all(_loosely_equal(env[o], trial[o]) for o in replay.outputs if o in changed):
                return f"removable: node {k} ({node['op']}) can be replaced by its input {name}"
    return None
