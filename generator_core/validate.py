"""Execute a rendered program on a device and judge its outputs.

Rejects: any exception, a non-finite output, an output whose shape differs from the
solved one, and a constant output (every element equal: a degenerate program). Inputs are
made from a seeded generator, inside `fork_rng`, so validation leaves no global state.

A sample must be the same bytes in any process, so what validation records is timing-free,
and CPU execution runs on one thread (intra-op parallel reductions may round differently
with another thread count, which would change the recorded output statistics).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from generator_core.sample import OutputStats, Validation


@dataclass
class Verdict:
    validation: Validation
    reason: str | None  # None when passed


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but no CUDA device is visible")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device: expected cpu, cuda or auto, got {device!r}")
    return device


def _entry_point(namespace: dict, fmt: str):
    if fmt == "kernelbench":
        return namespace["Model"]()
    return namespace["fused_operator"]


def _round(x: float) -> float:
    return float(f"{x:.6g}")


def _stats(t: torch.Tensor) -> OutputStats:
    f = t.detach().float()  # a copy only for half / index outputs; float32 is read in place
    return OutputStats(shape=list(t.shape), dtype=str(t.dtype).removeprefix("torch."),
                       mean=_round(f.mean(dtype=torch.float64).item()),
                       std=_round(f.std().item()) if f.numel() > 1 else 0.0,
                       min=_round(f.min().item()), max=_round(f.max().item()))


@contextlib.contextmanager
def _cpu_threads(device: str):
    if device != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _judge(outputs: list[torch.Tensor], expected: list[list[int]]) -> str | None:
    if len(outputs) != len(expected):
        return f"returned {len(outputs)} outputs, expected {len(expected)}"
    for i, (out, shape) in enumerate(zip(outputs, expected)):
        if list(out.shape) != shape:
            return f"output {i} has shape {list(out.shape)}, solved {shape}"
        if out.is_floating_point() and not bool(torch.isfinite(out).all()):
            return f"output {i} is not finite"
        if out.numel() > 1 and bool(out.max() == out.min()):
            return f"output {i} is constant"
    return None


def validate_program(code: str, expected_shapes: list[list[int]], *, fmt: str, device: str, seed: int) -> Verdict:
    device = resolve_device(device)
    outputs: list[torch.Tensor] = []
    try:
        namespace: dict = {}
        exec(compile(code, "<tcgen-sample>", "exec"), namespace)  # our own rendered code, never client text
        with torch.random.fork_rng(devices=[device] if device.startswith("cuda") else []), \
                torch.no_grad(), _cpu_threads(device):
            torch.manual_seed(seed)
            with torch.device(device):
                inputs = namespace["get_inputs"]()
            result = _entry_point(namespace, fmt)(*inputs)
            outputs = list(result) if isinstance(result, (list, tuple)) else [result]
            reason = _judge(outputs, expected_shapes)
            stats = [_stats(o) for o in outputs] if reason is None else []
    except Exception as exc:  # any failure of a generated program is a rejection, not a crash
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]
        stats = []
    # "cuda", not "cuda:1": which GPU validated a sample must not change its bytes.
    label = "cuda" if device.startswith("cuda") else device
    return Verdict(Validation(device=label, passed=reason is None, outputs=stats), reason)
