"""Per-sample baselines: how long a validated program takes on the device that validated it,
eagerly and (optionally) under torch.compile. RL reward code compares a generated kernel's
time against these, so they are measured as a kernel benchmark would: on the same seeded
inputs, after warm-up, CUDA events around each run, the median kept."""
from __future__ import annotations

import functools
import platform
import statistics
import time

import torch

from generator_core.sample import Baseline
from generator_core.validate import (Clock, _reason, as_device_fault, execution_scope, load_program,
                                     resolve_device)

RUNS = 10
WARMUP = 3


@functools.cache  # asked once per sample; the answer never changes in a process
def device_name(device: str) -> str:
    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor() or platform.machine() or "cpu"


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_runs(program, inputs: list[torch.Tensor], device: str, runs: int = RUNS, warmup: int = WARMUP) -> list[float]:
    """Seconds of each of `runs` calls after `warmup` calls (outputs dropped as they come)."""
    for _ in range(warmup):
        program(*inputs)
    _sync(device)
    times = []
    for _ in range(runs):
        clock = Clock(device)
        clock.mark("start")
        program(*inputs)
        clock.mark("run")
        times.append(clock.spans()["run"])
    return times


def _ms(seconds: float) -> float:
    return float(f"{seconds * 1000:.4g}")


def measure_baseline(code: str, fmt: str, *, device: str, seed: int, compile: bool = False) -> Baseline:
    """Eager timings of the program, and torch.compile's if asked. A device failure (out of
    memory, a CUDA error) raises DeviceFault, as in validation; a program that torch.compile
    cannot handle records why instead."""
    device = resolve_device(device)
    loaded = load_program(code, fmt)
    try:
        with execution_scope(device):  # as validation: on the CPU, one thread
            instance = loaded.instantiate(device, seed)
            program, inputs = instance.program, instance.inputs
            eager = time_runs(program, inputs, device)
            baseline = Baseline(device=device_name(device), torch=torch.__version__, runs=RUNS,
                                eager_ms=_ms(statistics.median(eager)), eager_min_ms=_ms(min(eager)))
            if compile:
                baseline = baseline.model_copy(update=_compiled(program, inputs, device))
            return baseline
    except Exception as exc:
        fault = as_device_fault(exc)
        if fault is not None:
            raise fault from exc
        raise


def _compiled(program, inputs: list[torch.Tensor], device: str) -> dict:
    try:
        compiled = torch.compile(program, dynamic=False)
        started = time.perf_counter()
        compiled(*inputs)  # compiles
        _sync(device)
        compile_s = time.perf_counter() - started
        times = time_runs(compiled, inputs, device)
        return {"compiled": True, "compile_s": round(compile_s, 3), "compiled_ms": _ms(statistics.median(times))}
    except Exception as exc:  # a program torch.compile cannot take is a finding, not a failure
        if as_device_fault(exc) is not None:
            raise
        return {"compiled": False, "compile_error": _reason(exc)}
    finally:
        torch._dynamo.reset()  # every program is new: nothing to gain from keeping its graphs
