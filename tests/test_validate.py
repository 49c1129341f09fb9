"""validate_program accepts sound programs and rejects broken ones with a reason."""
from __future__ import annotations

import pytest
import torch

from generator_core.validate import validate_program

INPUTS = "import torch\n\n\ndef get_inputs():\n    return [torch.randn([4, 8], dtype=torch.float32)]\n\n\n"
GOOD = INPUTS + "def fused_operator(tensor_0):\n    return [torch.relu(tensor_0) + 1.0]\n"
BAD = {
    "raises": ("def fused_operator(tensor_0):\n    return [torch.matmul(tensor_0, tensor_0)]\n", "RuntimeError"),
    "nan": ("def fused_operator(tensor_0):\n    return [tensor_0 * float('nan')]\n", "not finite"),
    "inf": ("def fused_operator(tensor_0):\n    return [tensor_0 / 0.0]\n", "not finite"),
    "wrong_shape": ("def fused_operator(tensor_0):\n    return [tensor_0.t()]\n", "shape [8, 4]"),
    "constant": ("def fused_operator(tensor_0):\n    return [tensor_0 * 0.0]\n", "constant"),
    "too_many": ("def fused_operator(tensor_0):\n    return [tensor_0, tensor_0]\n", "2 outputs"),
}
KERNELBENCH = """import torch
import torch.nn as nn


class Model(nn.Module):
    def __init__(self):
        super().__init__()

    def forward(self, tensor_0):
        return torch.sigmoid(tensor_0)


def get_inputs():
    return [torch.randn([4, 8], dtype=torch.float32)]


def get_init_inputs():
    return []
"""


def check(code, fmt="fused_operator", shapes=([4, 8],)):
    return validate_program(code, [list(s) for s in shapes], fmt=fmt, device="cpu", seed=0)


def test_accepts_a_good_program():
    """A sound program passes, with reason None and per-output statistics."""
    verdict = check(GOOD)
    assert verdict.reason is None and verdict.validation.passed and verdict.validation.device == "cpu"
    (stats,) = verdict.validation.outputs
    assert stats.shape == [4, 8] and stats.dtype == "float32" and stats.min >= 1.0


@pytest.mark.parametrize("case", list(BAD))
def test_rejects_broken_programs(case):
    """Exceptions, NaN/inf, wrong shapes, constant outputs and wrong output counts are rejected."""
    body, reason = BAD[case]
    verdict = check(INPUTS + body)
    assert not verdict.validation.passed and verdict.validation.outputs == []
    assert verdict.reason is not None and reason in verdict.reason


def test_kernelbench_format_runs_via_model():
    """KernelBench code runs through Model()(*get_inputs()); a bare tensor result is one output."""
    verdict = check(KERNELBENCH, fmt="kernelbench")
    assert verdict.reason is None and verdict.validation.passed
    assert check(KERNELBENCH, fmt="kernelbench", shapes=([8, 4],)).reason is not None


def test_kernelbench_code_without_model_is_rejected():
    """fused_operator code validated as kernelbench fails cleanly (no Model), not with a crash."""
    verdict = check(GOOD, fmt="kernelbench")
    assert not verdict.validation.passed and "defines no Model" in verdict.reason


def test_validation_leaves_global_rng_untouched():
    """Validation seeds its own generator inside fork_rng: the caller's RNG stream is unchanged."""
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    check(GOOD)
    assert torch.equal(torch.rand(3), expected)


def test_inputs_are_seeded():
    """The same seed gives the same output statistics; a different seed gives different ones."""
    stats = [validate_program(GOOD, [[4, 8]], fmt="fused_operator", device="cpu", seed=s).validation.outputs
             for s in (0, 0, 1)]
    assert stats[0] == stats[1] != stats[2]


BF16_CONV = """
import torch

def get_inputs():
    return [torch.randn([8, 2, 512, 5], dtype=torch.bfloat16), torch.randn([69, 2, 3, 3], dtype=torch.bfloat16)]

def fused_operator(x, w):
    return [torch.nn.functional.conv2d(x, w, stride=4, padding=1, dilation=2)]
"""


def test_a_half_type_verdict_does_not_depend_on_what_memory_held_before():
    """torch's oneDNN bfloat16 conv2d reads unwritten memory for this stride and dilation;
    validation runs half types without oneDNN, so freed memory holding other values before
    the run leaves the recorded statistics unchanged."""
    runs = []
    for junk in (0.0, 1e30, float("nan")):
        for size in (2**10, 2**16, 2**20):
            for dtype in (torch.bfloat16, torch.float64):
                del_me = torch.full((size,), junk, dtype=dtype)
                del del_me
            v = validate_program(BF16_CONV, [[8, 69, 128, 1]], fmt="fused_operator", device="cpu", seed=3,
                                 dtype="bfloat16")
            runs.append((v.reason, v.validation.model_dump_json()))
    assert len(set(runs)) == 1
    assert torch.backends.mkldnn.enabled  # and the flag is back as it was
