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
import copy
import math
import time
from dataclasses import dataclass
from typing import Callable

import torch

from generator_core import grading
from generator_core.sample import Grading, OutputStats, Validation


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
    grading: Grading | None = None  # the contract it was proved against, when passed


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda" and not torch.cuda.is_available():
        raise ValueError("device: cuda was asked for but no CUDA device is visible")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise ValueError(f"device: expected cpu, cuda or auto, got {device!r}")
    return device


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


Extremes = list[tuple[float, float, float]]  # (min, max, mean) of each output, unrounded


def _judge(outputs: list[torch.Tensor], expected: list[list[int]]) -> tuple[str | None, list[OutputStats], Extremes]:
    """The first problem, in output order (a shape, then NaN/Inf, then a constant output: NaN
    and Inf show in the extremes, equal extremes mean a constant), or the outputs' stats."""
    if len(outputs) != len(expected):
        return f"returned {len(outputs)} outputs, expected {len(expected)}", [], []
    shaped = 0
    while shaped < len(outputs) and list(outputs[shaped].shape) == expected[shaped]:
        shaped += 1
    figures = _summaries(outputs[:shaped])
    stats = []
    for i, out in enumerate(outputs[:shaped]):
        low, high, mean, std = figures[4 * i:4 * i + 4]
        if not (math.isfinite(low) and math.isfinite(high)):
            return f"output {i} is not finite", [], []
        if out.numel() > 1 and low == high:
            return f"output {i} is constant", [], []
        stats.append(OutputStats(shape=expected[i], dtype=str(out.dtype).removeprefix("torch."), mean=_round(mean),
                                 std=_round(std), min=_round(low), max=_round(high)))
    if shaped < len(outputs):
        return f"output {shaped} has shape {list(outputs[shaped].shape)}, solved {expected[shaped]}", [], []
    return None, stats, [tuple(figures[4 * i:4 * i + 3]) for i in range(len(outputs))]


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


@contextlib.contextmanager
def _reproducible_cpu_kernels(device: str, dtype: str):
    """On the CPU, half-type programs run without oneDNN: its bfloat16 conv2d (torch 2.13)
    reads memory it never wrote for some strides and dilations (input [8, 2, 512, 5], weight
    [69, 2, 3, 3], stride 4, padding 1, dilation 2 gives outputs that change with what the
    allocator handed out before), and a verdict must be the same in every process."""
    if device != "cpu" or dtype == "float32":
        yield
        return
    saved, torch.backends.mkldnn.enabled = torch.backends.mkldnn.enabled, False  # (flags() warns about TF32)
    try:
        yield
    finally:
        torch.backends.mkldnn.enabled = saved


@dataclass
class Instance:
    """A loaded program made ready for one input seed."""

    program: Callable  # fused_operator, or the KernelBench Model
    inputs: list[torch.Tensor]  # get_inputs(): what the program is called with
    weights: dict[str, torch.Tensor]  # the Model's parameters by name (graph inputs get_inputs() leaves out)

    @property
    def tensors(self) -> list[torch.Tensor]:
        """Every graph input: what a trivial answer may return."""
        return self.inputs + list(self.weights.values())

    def widened(self) -> Instance:
        """The same program and values in float64 (the truth a candidate is measured against)."""
        program = copy.deepcopy(self.program).double() if self.weights else self.program
        return Instance(program, [x.double() for x in self.inputs], {k: w.double() for k, w in self.weights.items()})


class LoadedProgram:
    """Rendered code, executed once: makes an Instance per input seed, as the grading
    contract says (torch.manual_seed(seed); in KernelBench's format Model(*get_init_inputs());
    then get_inputs(), all on the device)."""

    def __init__(self, code: str, fmt: str):
        self.fmt, self.namespace = fmt, {}
        exec(compile(code, "<tcgen-sample>", "exec"), self.namespace)  # our own rendered code, never client text
        if fmt == "kernelbench" and "Model" not in self.namespace:
            raise NameError("KernelBench format: the code defines no Model")
        if fmt != "kernelbench" and "fused_operator" not in self.namespace:
            raise NameError("fused_operator format: the code defines no fused_operator")

    def instantiate(self, device: str, seed: int) -> Instance:
        """Call inside fork_rng. A program may draw on the current CUDA device by itself
        (KernelBench's, so that KernelBench's CPU-side get_inputs() is cheap): that device
        is `device` here, and anything made elsewhere is moved to it."""
        torch.manual_seed(seed)
        with torch.device(device), (torch.cuda.device(device) if device.startswith("cuda") else
                                    contextlib.nullcontext()):
            program, weights = self.namespace.get("fused_operator"), {}
            if self.fmt == "kernelbench":
                program = self.namespace["Model"](*self.namespace.get("get_init_inputs", list)()).to(device)
                weights = dict(program.named_parameters())
            inputs = [x.to(device) for x in self.namespace["get_inputs"]()]
        return Instance(program, inputs, weights)


def load_program(code: str, fmt: str) -> LoadedProgram:
    return LoadedProgram(code, fmt)


def validate_program(code: str, expected_shapes: list[list[int]], *, fmt: str, device: str, seed: int,
                     dtype: str = "float32", graph: dict | None = None, steps: list[str] | None = None,
                     timings: dict[str, float] | None = None) -> Verdict:
    """The verdict on one program, over the grading contract's input seeds (grading.py).
    With the program's `graph` and `steps` (its expressions, as rendered) it also checks
    intermediates: index nodes' ties and nodes that change nothing. `timings`, when given,
    receives the seconds spent making inputs, running the program and checking (the first
    seed's), which are not part of the verdict."""
    device = resolve_device(device)
    replay = grading.Replay.of(graph, steps) if graph is not None and steps is not None else None
    seeds = grading.input_seeds(seed, dtype)
    stats: list[OutputStats] = []
    contract = None
    clock = Clock(device)
    try:
        with grading.grader_flags(), execution_scope(device), _reproducible_cpu_kernels(device, dtype):
            loaded = load_program(code, fmt)  # may pin its own precision flags
            precision = grading.precision_flags()
            for k, input_seed in enumerate(seeds):
                clock.mark("start")
                instance = loaded.instantiate(device, input_seed)
                clock.mark("inputs")
                env = replay.run(replay.named(instance.inputs, instance.weights)) if replay else None
                outputs = [env[o] for o in replay.outputs] if replay else _as_list(instance.program(*instance.inputs))
                clock.mark("program")
                reason, seed_stats, extremes = _judge(outputs, expected_shapes)
                if reason is None:
                    reason = _grade(outputs, extremes, instance, env, replay, dtype)
                clock.mark("check")
                if timings is not None and k == 0:
                    timings.update(clock.spans())
                if reason is not None:
                    stats = []
                    break
                if k == 0:
                    stats, contract = seed_stats, grading.contract(dtype, seeds, outputs, precision)
                del env, outputs, instance
                clock = Clock(device)
    except Exception as exc:  # any failure of a generated program is a rejection, not a crash...
        fault = as_device_fault(exc)
        if fault is not None:  # ...but a failure of the device is not the program's
            raise fault from exc
        reason, stats = _reason(exc), []
    # "cuda", not "cuda:1": which GPU validated a sample must not change its bytes.
    label = "cuda" if device.startswith("cuda") else device
    return Verdict(Validation(device=label, passed=reason is None, outputs=stats), reason,
                   contract if reason is None else None)


def _as_list(result) -> list[torch.Tensor]:
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _grade(outputs, extremes: Extremes, instance: Instance, env, replay, dtype: str) -> str | None:
    """The grading rules on one input seed's outputs. Padding is checked on every seed: a
    node can matter on one seed only (a ReLU of mostly positive values), and a grader's
    seeds are others."""
    reason = grading.trivial_answers(outputs, instance.tensors, extremes)
    if reason is None and replay is not None:
        reason = grading.removable(replay, env)
    if reason is not None:
        return reason
    wide = instance.widened()
    with _any_algorithms():
        if replay is None:
            return grading.numerics(outputs, _as_list(wide.program(*wide.inputs)), dtype)
        env64 = replay.run(replay.named(wide.inputs, wide.weights))  # float64 replay of every node: truth for outputs and index nodes
    truth = [env64[o] for o in replay.outputs]
    return grading.numerics(outputs, truth, dtype) or grading.ties(replay.nodes, env, env64, dtype, replay.input_names)


@contextlib.contextmanager
def _any_algorithms():
    """The float64 truth may use nondeterministic kernels (a GPU worker turns deterministic
    algorithms on for the sample's recorded statistics, which some float64 kernels pay for
    dearly): it only decides a comparison against a tolerance, which float64's run-to-run
    differences (~1e-16) cannot move, and no figure of it is recorded."""
    if not torch.are_deterministic_algorithms_enabled():
        yield
        return
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(False)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(True, warn_only=warn_only)
