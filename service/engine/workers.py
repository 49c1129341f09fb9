"""Entry points of the engine's worker processes (forked from a preloaded server, pool.WORKERS).

A worker reads requests from its end of a pipe and answers each with one message. It
ignores SIGINT (Ctrl-C reaches the whole process group; the parent decides what stops)
and exits, quietly, when the pipe closes or its parent is gone: a parent killed with -9
leaves no orphans running, not even for the rest of a long solve.
"""
from __future__ import annotations

import contextlib
import ctypes
import gc
import os
import signal
import sys
import threading
import time
from typing import Callable

from service.engine.faults import maybe_crash, planned_fault
from service.engine.messages import Answer, Done, Fault, Ready, Rejected, Request, Solved, SolveRequest, ValidateRequest

# A worker exits with this status after a sticky device fault (its context is unusable).
EXIT_POISONED = 75
# Every program has new shapes, so oneDNN's per-shape kernel cache (1024 entries by
# default) only grows a worker's memory; a few entries are enough.
WORKER_ENV = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "8", "DNNL_PRIMITIVE_CACHE_CAPACITY": "8"}
SOLVER_ENV = {**WORKER_ENV, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


PARENT_POLL_S = 0.1
# What the fork server imports once so that no worker pays for it (torch is imported, never
# initialised: CUDA starts in each child, after its CUDA_VISIBLE_DEVICES is set).
PRELOAD = ("service.engine.workers", "generator_core.generate", "generator_core.validate", "torch")


def start_worker(target: Callable, conn, device: str | None, env: dict[str, str]) -> None:
    """A worker's first step: the environment it was started with (the fork server's is
    from when that started), then its entry point."""
    os.environ.clear()
    os.environ.update(env)
    target(conn, device)


def _exit_with_parent() -> None:
    """Exit as soon as the parent is gone (this process is handed to another parent). A
    worker in the middle of a solve or a program would only notice at its next send, seconds
    later, and spend them on work nobody will read."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(PARENT_POLL_S)
        os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _serve(conn, handle: Callable[[Request], Answer]) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _exit_with_parent()
    if not _send(conn, Ready(os.getpid())):
        return
    while (request := _receive(conn)) is not None:
        answer = handle(request)
        if not _send(conn, answer):
            return
        if isinstance(answer, Fault) and answer.sticky:
            os._exit(EXIT_POISONED)  # a sticky CUDA error: nothing more can run in this context


# A closed pipe means the parent is gone (or stopped this worker): nothing to report, so no
# BrokenPipeError traceback in the server's log. Only the pipe's errors are caught here.
def _receive(conn):
    try:
        return conn.recv()
    except (EOFError, OSError):
        return None


def _send(conn, message) -> bool:
    try:
        conn.send(message)
        return True
    except OSError:  # BrokenPipeError, ConnectionResetError
        return False


def _done(index: int, candidate, rejected: list[str], verdict, label: str | None, baseline=None) -> Done:
    """The finished sample, serialised here so the parent only routes and writes bytes."""
    from generator_core.generate import make_sample

    sample_json = make_sample(candidate, rejected, verdict, baseline).model_dump_json()
    return Done(index, candidate.attempt, sample_json, candidate.fields["flops_window_relaxed"], label)


def _timed(stage: str, answer: Answer, started: float) -> Answer:
    answer.timings[stage] = time.perf_counter() - started
    return answer


def _release_memory():
    """Give memory freed by the last program back to the OS. glibc keeps freed heap pages
    of the (varied, often large) tensors of each program, so a long run's RSS would
    ratchet up to fragmentation of the largest ones (measured: 390 -> 510 MB per worker
    over 4000 samples without this; 340 -> 350 MB with it)."""
    try:
        trim = ctypes.CDLL("libc.so.6").malloc_trim
    except (OSError, AttributeError):  # not glibc
        return lambda: None
    return lambda: trim(0)


def _validator(label: str) -> Callable[[ValidateRequest], Answer]:
    """validate(request) -> the worker's answer, on this process's device.
    CUDA_VISIBLE_DEVICES was set (start_worker) before CUDA initialised in this process, so
    torch sees exactly the one GPU of `label`."""
    from generator_core.generate import rejection
    from generator_core.validate import DeviceFault

    device = "cpu" if label == "cpu" else "cuda"
    release_memory = _release_memory()
    _set_up_device(device)
    run = _device_run(device, release_memory)

    def validate(request: ValidateRequest) -> Answer:
        index, candidate = request.index, request.candidate
        maybe_crash("validate", index)
        started = time.perf_counter()
        timings: dict[str, float] = {}
        result = run(index, candidate, timings)
        if isinstance(result, DeviceFault) and not result.sticky:
            result = run(index, candidate, timings)  # out of memory: once more, with the caches emptied
        if isinstance(result, DeviceFault):
            # The engine decides: retry on a fresh worker, or (a second time) reject as unfit.
            return _timed("validate", Fault(index, candidate.attempt, result.reason, result.sticky), started)
        verdict, baseline = result
        release_memory()
        if verdict.reason is not None:
            answer: Answer = Rejected(index, candidate.attempt, rejection(candidate, verdict))
        else:
            answer = _done(index, candidate, request.rejected, verdict, label, baseline)
        answer.timings.update({f"validate.{k}": v for k, v in timings.items()})
        return _timed("validate", answer, started)

    return validate


def _set_up_device(device: str) -> None:
    """torch's settings for validating on `device` ("cpu" or "cuda"), set once per process."""
    import torch

    if device == "cpu":
        torch.set_num_threads(1)  # what validate_program uses anyway; set once, not per sample
    else:
        # A sample records its outputs' statistics, so a GPU must compute them the same way
        # every time: no nondeterministic kernels (atomics), no autotuned cuDNN choices.
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def _device_run(device: str, release_memory):
    """run(index, candidate, timings) -> (verdict, baseline) or the DeviceFault that stopped it
    (device memory freed after a fault that leaves the device usable)."""
    import torch

    from generator_core.generate import baseline_of, validate_candidate
    from generator_core.sample import Baseline
    from generator_core.validate import DeviceFault, Verdict

    def free_device_memory() -> None:
        gc.collect()  # the failed program's tensors, held by its traceback's frames
        if device == "cuda":
            torch.cuda.empty_cache()
        release_memory()

    def run(index: int, candidate, timings: dict[str, float]) -> tuple[Verdict, Baseline | None] | DeviceFault:
        fault = None
        try:
            with planned_fault(index, device) or contextlib.nullcontext():
                verdict = validate_candidate(candidate, device=device, timings=timings)
            if verdict.reason is not None:
                return verdict, None
            started = time.perf_counter()
            baseline = baseline_of(candidate, device=device)
            if baseline is not None:
                timings["baseline"] = time.perf_counter() - started
            return verdict, baseline
        except DeviceFault as exc:
            fault = DeviceFault(exc.reason, exc.sticky)  # without the traceback and its tensors
        if not fault.sticky:  # a poisoned context fails every call, freeing included; it exits instead
            free_device_memory()
        return fault

    return run


def solver(validate_on: str | None = None):
    """handle(request) -> answer for solver requests. With `validate_on` ("cpu": no GPU on
    this machine) it also validates them itself; otherwise a validated spec's candidates go
    back to be sent to a GPU worker. A spawned solver process serves one; a Ray task worker
    keeps one per process (ray_backend)."""
    from generator_core.generate import solve_attempt
    from generator_core.spec import GenerationSpec

    specs: dict[str, GenerationSpec] = {}
    validate = None

    def handle(request: SolveRequest) -> Answer:
        nonlocal validate
        index, attempt, rejected = request.index, request.attempt, request.rejected
        spec = specs.get(request.spec_json)
        if spec is None:
            spec = specs[request.spec_json] = GenerationSpec.model_validate_json(request.spec_json)
        maybe_crash("solve", index)
        started = time.perf_counter()
        result = solve_attempt(spec, index, attempt)
        solved = time.perf_counter()
        if isinstance(result, str):
            return _timed("solve", Rejected(index, attempt, result), started)
        if not spec.validate_samples:
            return _timed("solve", _done(index, result, rejected, None, None), started)
        if validate_on is None:
            return _timed("solve", Solved(index, attempt, result), started)
        validate = validate or _validator(validate_on)  # set up on first use only
        answer = validate(ValidateRequest(index, result, rejected))
        answer.timings["solve"] = solved - started
        return answer

    return handle


def solver_main(conn, validate_on: str | None = None) -> None:
    _serve(conn, solver(validate_on))


def validation_main(conn, label: str) -> None:
    _serve(conn, _validator(label))


if __name__ == "__main__":  # pragma: no cover - not a command
    sys.exit("service.engine.workers is started by the engine")
