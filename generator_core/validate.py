"""Execute a rendered program on a device and judge its outputs.

Rejects: any exception of the program (a failure of the device itself raises DeviceFault
instead), a non-finite output, an output whose shape differs from the
solved one, and a constant output (every element equal: a degenerate program). Inputs are
made from a seeded generator, inside `fork_rng`, so validation leaves no global state.

A sample must be the same bytes in any process, so what validation records is timing-free,
and CPU execution runs on one thread (intra-op parallel reductions may round differently
with another thread count, which would change the recorded output statistics).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass

import torch

from generator_core.sample import OutputStats, Validation


class DeviceFault(Exception):
    """The device failed, not the program: out of memory, or a CUDA error that leaves the
    context unusable ("sticky": an illegal memory access, a device-side assert). The verdict
    would depend on the device's state rather than on the sample, so it is not a rejection:
    the validation worker decides (free memory and retry, restart, or reject as unfit)."""

    def __init__(self, reason: str, sticky: bool):
        super().__init__(reason)
        self.reason, self.sticky = reason, sticky


def as_device_fault(exc: BaseException) -> DeviceFault | None:
    """`exc` as a DeviceFault, or None for an ordinary program failure. By type (torch raises
    OutOfMemoryError for a full device, AcceleratorError for CUDA errors), with the message
    as a fallback for CUDA-library errors raised as plain RuntimeError."""
    reason = _reason(exc)
    if isinstance(exc, torch.OutOfMemoryError):
        return DeviceFault(reason, sticky=False)
    if isinstance(exc, torch.AcceleratorError) or (
            isinstance(exc, RuntimeError) and any(s in str(exc) for s in ("CUDA error", "CUBLAS_STATUS", "cuDNN error"))):
        return DeviceFault(reason, sticky=True)
    return None


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:300]


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


@contextlib.contextmanager
def _cpu_threads(device: str):
    before = torch.get_num_threads()
    if device != "cpu" or before == 1:  # a validation worker pins one thread once, up front
        yield
        return
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _summaries(outputs: list[torch.Tensor]) -> list[float]:
    """min, max, mean and std of each output, read back in one transfer: on a GPU every
    `.item()` waits for the device, and four waits per output cost more than the reductions
    (the figures are the same floats as one `.item()` each would give)."""
    parts = []
    for out in outputs:
        f = out.detach().float()  # a copy only for half / index outputs; float32 is read in place
        low, high = torch.aminmax(f)
        std = f.std() if f.numel() > 1 else torch.zeros((), device=f.device)
        parts.append(torch.stack([low.double(), high.double(), f.mean(dtype=torch.float64), std.double()]))
    return torch.cat(parts).tolist() if parts else []


def _judge(outputs: list[torch.Tensor], expected: list[list[int]]) -> tuple[str | None, list[OutputStats]]:
    """The first problem, in output order (a shape, then NaN/Inf, then a constant output: NaN
    and Inf show in the extremes, equal extremes mean a constant), or the outputs' stats."""
    if len(outputs) != len(expected):
        return f"returned {len(outputs)} outputs, expected {len(expected)}", []
    shaped = 0
    while shaped < len(outputs) and list(outputs[shaped].shape) == expected[shaped]:
        shaped += 1
    figures = _summaries(outputs[:shaped])
    stats = []
    for i, out in enumerate(outputs[:shaped]):
        low, high, mean, std = figures[4 * i:4 * i + 4]
        if not (math.isfinite(low) and math.isfinite(high)):
            return f"output {i} is not finite", []
        if out.numel() > 1 and low == high:
            return f"output {i} is constant", []
        stats.append(OutputStats(shape=expected[i], dtype=str(out.dtype).removeprefix("torch."), mean=_round(mean),
                                 std=_round(std), min=_round(low), max=_round(high)))
    if shaped < len(outputs):
        return f"output {shaped} has shape {list(outputs[shaped].shape)}, solved {expected[shaped]}", []
    return None, stats


class Clock:
    """Marks on the device's timeline: CUDA events on a GPU (no synchronisation until read),
    the wall clock on the CPU. `spans()` gives the seconds between consecutive marks."""

    def __init__(self, device: str):
        self.cuda = device.startswith("cuda")
        self.marks: list[tuple[str, object]] = []

    def mark(self, name: str) -> None:
        if self.cuda:
            event = torch.cuda.Event(enable_timing=True)
            event.record()
            self.marks.append((name, event))
        else:
            self.marks.append((name, time.perf_counter()))

    def spans(self) -> dict[str, float]:
        if self.cuda and self.marks:
            self.marks[-1][1].synchronize()
        return {name: (self.marks[i][1].elapsed_time(t) / 1000 if self.cuda else t - self.marks[i][1])
                for i, (name, t) in enumerate(self.marks[1:])}


@contextlib.contextmanager
def execution_scope(device: str):
    """Where a program runs: its own RNG state (left as it was found), no autograd, and on
    the CPU one thread (so reductions round the same in any process)."""
    with torch.random.fork_rng(devices=[device] if device.startswith("cuda") else []), torch.no_grad(), \
            _cpu_threads(device):
        yield


def load_program(code: str, fmt: str):
    """(get_inputs, the callable to time or run) of rendered code."""
    namespace: dict = {}
    exec(compile(code, "<tcgen-sample>", "exec"), namespace)  # our own rendered code, never client text
    return namespace["get_inputs"], _entry_point(namespace, fmt)


def make_inputs(get_inputs, device: str, seed: int) -> list[torch.Tensor]:
    """The program's inputs, made on `device` from `seed` (call inside fork_rng)."""
    torch.manual_seed(seed)
    with torch.device(device):
        return get_inputs()


def validate_program(code: str, expected_shapes: list[list[int]], *, fmt: str, device: str, seed: int,
                     timings: dict[str, float] | None = None) -> Verdict:
    """The verdict on one program. `timings`, when given, receives the seconds spent making
    inputs, running the program and checking its outputs (not part of the verdict)."""
    device = resolve_device(device)
    outputs: list[torch.Tensor] = []
    clock = Clock(device)
    try:
        get_inputs, program = load_program(code, fmt)
        with execution_scope(device):
            clock.mark("start")
            inputs = make_inputs(get_inputs, device, seed)
            clock.mark("inputs")
            result = program(*inputs)
            clock.mark("program")
            outputs = list(result) if isinstance(result, (list, tuple)) else [result]
            reason, stats = _judge(outputs, expected_shapes)
            clock.mark("check")
        if timings is not None:
            timings.update(clock.spans())
    except Exception as exc:  # any failure of a generated program is a rejection, not a crash...
        fault = as_device_fault(exc)
        if fault is not None:  # ...but a failure of the device is not the program's
            raise fault from exc
        reason, stats = _reason(exc), []
    # "cuda", not "cuda:1": which GPU validated a sample must not change its bytes.
    label = "cuda" if device.startswith("cuda") else device
    return Verdict(Validation(device=label, passed=reason is None, outputs=stats), reason)
