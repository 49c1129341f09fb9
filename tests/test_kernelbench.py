"""KernelBench-format samples through KernelBench's own evaluator code (ScalingIntelligence/
KernelBench, src/kernelbench/eval.py, unmodified), as far as it runs without CUDA: its loader,
seeding, input processing, `.shape` comparison and tolerance. The full GPU run is
`python -m bench.kernelbench_eval` (README, "KernelBench").

KernelBench is not on PyPI: the test reads a checkout or git directory from TCGEN_KERNELBENCH,
else the snapshot at /work/.mirror (where this project's machines keep one)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from bench.kernelbench_eval import compiled_candidate, cpu_check, identical_candidate, load_evaluator
from generator_core import GenerationError, generate
from helpers import spec

SOURCES = [os.environ.get("TCGEN_KERNELBENCH", ""), "/work/.mirror/ScalingIntelligence+KernelBench/repo"]


@pytest.fixture(scope="module")
def kb():
    source = next((s for s in SOURCES if s and Path(s).exists()), None)
    if source is None:
        pytest.skip("no KernelBench source: set TCGEN_KERNELBENCH to a checkout of ScalingIntelligence/KernelBench")
    evaluator, _ = load_evaluator(source)
    return evaluator


def kernelbench_sample(level: int, index: int, dtype: str = "float32"):
    return generate(spec(level=level, seed=14, dtype=dtype, format="kernelbench"), index)


def kernelbench_samples(level: int, dtype: str, count: int = 3) -> list:
    """The first `count` samples of the level (an index given up is not this test's subject:
    bench.kernelbench_eval counts those)."""
    samples = []
    for index in range(2 * count):
        try:
            samples.append(kernelbench_sample(level, index, dtype))
        except GenerationError:
            continue
        if len(samples) == count:
            return samples
    raise AssertionError(f"level {level} {dtype}: fewer than {count} samples in {2 * count} indices")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("level", [1, 2, 3, 4])
def test_identical_candidates_pass_kernelbench(kb, level, dtype):
    """The reference renamed ModelNew passes KernelBench's correctness steps over 5 trial
    seeds: one output with a `.shape`, weights made alike from get_init_inputs() and the seed."""
    for sample in kernelbench_samples(level, dtype):
        verdict = cpu_check(kb, sample.pytorch, identical_candidate(sample.pytorch), getattr(torch, dtype), trials=5)
        assert verdict == {"correctness": True, "trials": "5/5"}, (sample.ops, verdict)


def test_weights_come_from_get_init_inputs(kb):
    """KernelBench's loader finds Model, get_inputs and get_init_inputs; the weights are the
    Model's parameters, shaped by get_init_inputs(), and equal for equal seeds."""
    sample = generate(spec(op_sequence=["Conv2d", "ReLU", "Matmul"], seed=1, format="kernelbench"), 0)
    Model, get_init_inputs, get_inputs = kb.load_original_model_and_inputs(sample.pytorch, {})
    weights = [t for t in sample.graph["inputs"] if t["weight"]]
    assert get_init_inputs() == [t["shape"] for t in weights]
    models = []
    for _ in range(2):
        kb.set_seed(42)
        models.append(Model(*get_init_inputs()))
    params = [dict(m.named_parameters()) for m in models]
    assert sorted(params[0]) == sorted(t["name"] for t in weights)
    assert all(torch.equal(params[0][k], params[1][k]) for k in params[0])
    assert len(get_inputs()) == len(sample.graph["inputs"]) - len(weights)


def test_a_wrong_candidate_fails_kernelbench(kb):
    """KernelBench's check can fail on these samples: a candidate that skips the last node."""
    sample = kernelbench_sample(2, 0)
    last = sample.graph["nodes"][-1]
    wrong = identical_candidate(sample.pytorch).replace(f"return {last['output']}", f"return {last['output']} * 1.01")
    assert cpu_check(kb, sample.pytorch, wrong, torch.float32)["correctness"] is False


def test_torch_compile_candidate_passes_kernelbench(kb):
    """A ModelNew whose forward is torch.compile'd passes (one sample: compiling is slow on a CPU)."""
    sample = kernelbench_sample(2, 1)
    verdict = cpu_check(kb, sample.pytorch, compiled_candidate(sample.pytorch), torch.float32)
    torch._dynamo.reset()
    assert verdict["correctness"], verdict
