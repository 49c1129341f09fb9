"""Entry points of the engine's worker processes (started with the spawn method).

A worker reads requests from its end of a pipe and answers each with one message. It
ignores SIGINT (Ctrl-C reaches the whole process group; the parent decides what stops)
and exits when the pipe closes, so a parent killed with -9 leaves no orphans running.
"""
from __future__ import annotations

import ctypes
import os
import signal
import sys
import time
from typing import Any

# Faults the tests inject on purpose: TCGEN_TEST_CRASH="<stage>:<index>[:<once-file>]" makes
# the worker kill itself (SIGKILL, as a segfault or the OOM killer would) when it reaches
# <stage> (solve or validate) for <index>; with <once-file>, only the first time (the file
# records it). Unset in normal runs.
CRASH_ENV = "TCGEN_TEST_CRASH"


def _maybe_crash(stage: str, index: int) -> None:
    planned = os.environ.get(CRASH_ENV, "")
    if not planned:
        return
    want_stage, want_index, *once = planned.split(":", 2)
    if (want_stage, want_index) != (stage, str(index)):
        return
    if once:
        try:
            os.close(os.open(once[0], os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            return  # crashed once already
    os.kill(os.getpid(), signal.SIGKILL)


def _serve(conn, handle) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send(("ready", os.getpid()))
    while True:
        try:
            request = conn.recv()
        except (EOFError, OSError):
            return  # the parent is gone
        if request is None:
            return
        conn.send(handle(request))


def _done(index: int, candidate, rejected: list[str], validation, label: str | None) -> tuple[Any, ...]:
    """The finished sample, serialised here so the parent only routes and writes bytes.
    Every answer ends with a dict of stage timings (seconds), which only metrics read."""
    from generator_core.generate import make_sample

    sample_json = make_sample(candidate, rejected, validation).model_dump_json()
    return ("done", index, candidate.attempt, sample_json, candidate.fields["flops_window_relaxed"], label, {})


def _timed(stage: str, answer: tuple[Any, ...], started: float) -> tuple[Any, ...]:
    answer[-1][stage] = time.perf_counter() - started
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


def _validator(label: str):
    """validate(index, candidate, rejected) -> the worker's answer, on this process's device.
    CUDA_VISIBLE_DEVICES was set before the process started, so torch (imported here, the
    first time in this process) sees exactly the one GPU of `label`."""
    import torch

    from generator_core.generate import rejection, validate_candidate

    device = "cpu" if label == "cpu" else "cuda"
    release_memory = _release_memory()
    if device == "cpu":
        torch.set_num_threads(1)  # what validate_program uses anyway; set once, not per sample

    def validate(index: int, candidate, rejected: list[str]) -> tuple[Any, ...]:
        _maybe_crash("validate", index)
        started = time.perf_counter()
        verdict = validate_candidate(candidate, device=device)
        release_memory()
        if verdict.reason is not None:
            return _timed("validate", ("rejected", index, candidate.attempt, rejection(candidate, verdict), {}), started)
        return _timed("validate", _done(index, candidate, rejected, verdict.validation, label), started)

    return validate


def solver_main(conn, validate_on: str | None = None) -> None:
    """Solves attempts. With `validate_on` ("cpu": no GPU on this machine) it also validates
    them itself; otherwise a validated spec's candidates go back to be sent to a GPU worker."""
    from generator_core.generate import solve_attempt
    from generator_core.spec import GenerationSpec

    specs: dict[str, GenerationSpec] = {}
    validate = None

    def handle(request: tuple[str, int, int, list[str]]) -> tuple[Any, ...]:
        nonlocal validate
        spec_json, index, attempt, rejected = request
        spec = specs.get(spec_json)
        if spec is None:
            spec = specs[spec_json] = GenerationSpec.model_validate_json(spec_json)
        _maybe_crash("solve", index)
        started = time.perf_counter()
        result = solve_attempt(spec, index, attempt)
        solved = time.perf_counter()
        if isinstance(result, str):
            return _timed("solve", ("rejected", index, attempt, result, {}), started)
        if not spec.validate_samples:
            return _timed("solve", _done(index, result, rejected, None, None), started)
        if validate_on is None:
            return _timed("solve", ("solved", index, attempt, result, {}), started)
        validate = validate or _validator(validate_on)  # torch is imported on first use only
        answer = validate(index, result, rejected)
        answer[-1]["solve"] = solved - started
        return answer

    _serve(conn, handle)


def validation_main(conn, label: str) -> None:
    validate = _validator(label)
    _serve(conn, lambda request: validate(*request))


if __name__ == "__main__":  # pragma: no cover - not a command
    sys.exit("service.engine.workers is started by the engine")
