"""The grader that ships with the data: run a candidate implementation against a sample under
its grading contract (README, "Grading contract") and say whether it is correct and how fast.

    from generator_core import grade
    result = grade(sample, open("candidate.py").read(), device="auto")
    result.correct, result.reason, result.max_error, result.speedup

The candidate is the KernelBench form (`class ModelNew(nn.Module)`, constructed with the
reference's `get_init_inputs()` after the same seed) or, for a fused_operator sample, a
`fused_operator` function. It runs in a child process (generator_core/grade_worker.py)
with a wall-clock limit and a memory limit, so a crash, a hang, a CUDA fault or a huge
allocation is a verdict with its reason, never a failure of the caller. This module starts
that process; nothing in the REST service imports it (the service never runs client text).
"""
from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Literal

import psutil
from pydantic import BaseModel

from generator_core.sample import Grading, Sample

WORKER = Path(__file__).with_name("grade_worker.py")
GiB = 2**30
DEFAULT_TIMEOUT_S = 300.0
POLL_S = 0.05
STDERR_TAIL = 2000  # characters of the child's stderr kept for a crash's reason


class GradeInputError(ValueError):
    """What was asked cannot be graded: a sample without a grading contract, an unknown
    device, a limit out of range. Raised before any process starts."""


class GradingTask(BaseModel):
    """What the grader needs of a sample (and what a verl dataset's ground truth holds)."""

    pytorch: str
    format: Literal["fused_operator", "kernelbench"]
    dtype: str
    output_shapes: list[list[int]]
    grading: Grading
    bytes: int = 0  # all tensors the program allocates: sizes the default memory limit
    id: str | None = None

    @classmethod
    def of(cls, sample: Sample | GradingTask) -> GradingTask:
        if isinstance(sample, GradingTask):
            return sample
        if sample.grading is None:
            raise GradeInputError(f"sample {sample.id} has no grading contract (it was generated with "
                                  "validation off); generate it with validation on")
        return cls(pytorch=sample.pytorch, format=sample.format, dtype=sample.dtype,
                   output_shapes=sample.output_shapes, grading=sample.grading, bytes=sample.bytes, id=sample.id)


class SeedResult(BaseModel):
    seed: int
    max_error: float | None  # largest |candidate - reference| over the float outputs
    passed: bool


class GradeResult(BaseModel):
    compiled: bool  # the candidate's source loaded and defines its entry point
    correct: bool  # every output within atol/rtol (exact for index outputs) on every input seed
    graded: bool = True  # False: no verdict on the candidate (the reference failed, the grader did, ...)
    reason: str | None = None  # None when correct
    max_error: float | None = None
    seeds: list[SeedResult] = []
    speedup: float | None = None  # reference_ms / candidate_ms (when correct and measured)
    reference_ms: float | None = None  # median of `runs` eager runs after warm-up
    candidate_ms: float | None = None
    compiled_reference_ms: float | None = None  # torch.compile's reference (compile=True)
    speedup_vs_compiled: float | None = None
    compile_error: str | None = None
    runs: int | None = None
    timing: Literal["cuda_events", "perf_counter"] | None = None
    device: str
    device_name: str | None = None
    wall_s: float = 0.0

    def summary(self) -> str:
        """The verdict in a few lines (what `tcgen grade` prints without --json)."""
        verdict = "correct" if self.correct else "incorrect" if self.graded else "not graded"
        lines = [f"{verdict}: {self.reason}" if self.reason else verdict,
                 f"compiled: {'yes' if self.compiled else 'no'}; device: {self.device}"
                 + (f" ({self.device_name})" if self.device_name else "") + f"; {self.wall_s:.1f} s"]
        if self.max_error is not None:
            lines.append(f"max error {self.max_error:.3g} over {len(self.seeds)} input seed(s)")
        if self.speedup is not None:
            lines.append(f"speedup {self.speedup:.3g}x: reference {self.reference_ms:.4g} ms, candidate "
                         f"{self.candidate_ms:.4g} ms (median of {self.runs}, {self.timing})")
        if self.speedup_vs_compiled is not None:
            lines.append(f"vs torch.compile's reference ({self.compiled_reference_ms:.4g} ms): "
                         f"{self.speedup_vs_compiled:.3g}x")
        if self.compile_error:
            lines.append(f"torch.compile's reference failed: {self.compile_error}")
        return "\n".join(lines)


def default_memory_limit(task: GradingTask) -> int:
    """Room for the program's tensors three times over (inputs, the reference's and the
    candidate's intermediates and outputs) plus 4 GiB for torch itself (and torch.compile)."""
    return 3 * task.bytes + 4 * GiB


def _host_memory() -> int:
    return psutil.virtual_memory().total


def _check(timeout_s: float, memory_limit_bytes: int, runs: int, warmup: int) -> None:
    if not (timeout_s > 0 and math.isfinite(timeout_s)):
        raise GradeInputError(f"timeout_s: expected a positive number of seconds, got {timeout_s}")
    if memory_limit_bytes < GiB:
        raise GradeInputError(f"memory_limit_bytes: {memory_limit_bytes} is below 1 GiB (torch alone needs about that)")
    if runs < 1 or warmup < 0:
        raise GradeInputError(f"runs ({runs}) must be at least 1 and warmup ({warmup}) at least 0")


def _device(device: str) -> str:
    """The device, checked without initialising CUDA in this process (the caller may be a
    trainer that forks; the child does the CUDA work)."""
    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise GradeInputError(f"device: expected cpu, cuda, cuda:N or auto, got {device!r}")
    if device == "cpu":
        return device
    import torch

    if not torch.cuda.is_available():
        if device == "auto":
            return "cpu"
        raise GradeInputError(f"device: {device} was asked for but no CUDA device is visible")
    return "cuda" if device == "auto" else device


def grade(sample: Sample | GradingTask, candidate_source: str, *, device: str = "auto", compile: bool = False,
          timeout_s: float = DEFAULT_TIMEOUT_S, memory_limit_bytes: int | None = None,
          host_memory_limit_bytes: int | None = None, measure_speed: bool = True, runs: int = 20,
          warmup: int = 3) -> GradeResult:
    """Grade `candidate_source` against `sample` in a child process.

    device: cpu, cuda, cuda:N or auto (CUDA when visible). compile: also time torch.compile's
    reference (`speedup_vs_compiled`). timeout_s: wall-clock limit of the whole child (start,
    loading, every input seed, timing); on expiry its process group is killed.
    memory_limit_bytes (default: default_memory_limit): on the CPU the child's address space
    (RLIMIT_AS); on CUDA the GPU memory torch's allocator may take. host_memory_limit_bytes
    (CUDA only; default: memory_limit_bytes, at least 8 GiB, at most half the host's memory):
    the child's writable memory (RLIMIT_DATA) and its process tree's resident memory (a
    watchdog kills it). measure_speed: time both sides when the candidate is correct
    (median of `runs` after `warmup`; CUDA events on a GPU, perf_counter on the CPU).
    """
    started = time.monotonic()
    task = GradingTask.of(sample)
    memory_limit_bytes = memory_limit_bytes or default_memory_limit(task)
    _check(timeout_s, memory_limit_bytes, runs, warmup)
    device = _device(device)
    if device == "cpu":
        memory_limit_bytes = host_limit = min(memory_limit_bytes, _host_memory())
    else:
        host_limit = host_memory_limit_bytes or min(max(memory_limit_bytes, 8 * GiB), _host_memory() // 2)
    request = {"task": task.model_dump(), "device": device, "compile": compile, "measure_speed": measure_speed,
               "runs": runs, "warmup": warmup, "memory_limit_bytes": memory_limit_bytes,
               "host_memory_limit_bytes": host_limit if device != "cpu" else None}
    with tempfile.TemporaryDirectory(prefix="tcgen-grade-") as workdir:
        run = _Child(Path(workdir), request, candidate_source)
        verdict = run.wait(timeout_s, host_limit)
    label = "cuda" if device.startswith("cuda") else "cpu"
    return GradeResult.model_validate({"device": label, **verdict, "wall_s": round(time.monotonic() - started, 3)})


class _Child:
    """The worker process in its own session (so that its whole process group can be
    killed), fed through files in `workdir`."""

    def __init__(self, workdir: Path, request: dict, candidate_source: str):
        self.workdir = workdir
        (workdir / "request.json").write_text(json.dumps(request), encoding="utf-8")
        (workdir / "reference.py").write_text(request["task"]["pytorch"], encoding="utf-8")
        (workdir / "candidate.py").write_text(candidate_source, encoding="utf-8")
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1",
               # torch.compile in the child compiles in the child (no pool of compile workers)
               "TORCHINDUCTOR_COMPILE_THREADS": "1"}
        self.stderr = open(workdir / "stderr", "wb")
        self.proc = subprocess.Popen([sys.executable, str(WORKER), str(workdir)], cwd=workdir, env=env,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=self.stderr,
                                     start_new_session=True)

    def wait(self, timeout_s: float, host_limit: int) -> dict:
        deadline = time.monotonic() + timeout_s
        killed = None
        try:
            while self.proc.poll() is None:
                if time.monotonic() > deadline:
                    killed = f"timed out after {timeout_s:g} s"
                elif _tree_rss(self.proc.pid) > host_limit:
                    killed = f"memory limit: resident memory over {host_limit / GiB:.3g} GiB"
                if killed:
                    self._kill()
                    break
                try:
                    self.proc.wait(POLL_S)
                except subprocess.TimeoutExpired:
                    pass
        finally:
            self._kill()  # whatever the candidate started in its process group goes too
            self.stderr.close()
        return self._verdict(killed)

    def _kill(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.proc.wait()

    def _verdict(self, killed: str | None) -> dict:
        result = self.workdir / "result.json"
        if killed is None and result.exists():
            return json.loads(result.read_text(encoding="utf-8"))
        progress = self.workdir / "progress"
        stages = progress.read_text(encoding="utf-8").splitlines() if progress.exists() else []
        stage = stages[-1] if stages else "starting"
        code = self.proc.returncode
        if killed is None:
            how = f"killed by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
            killed = f"crashed: {how}"
            tail = self._stderr_tail()
            if tail:
                killed += f"; stderr ends: {tail}"
        loaded = stage not in ("starting", "loading the reference", "loading the candidate")
        return {"compiled": loaded, "correct": False, "graded": "reference" not in stage and stage != "starting",
                "reason": f"{killed} ({stage})"}

    def _stderr_tail(self) -> str:
        """What the child last said: after a fatal signal, faulthandler's line and the
        candidate's innermost frame; else the last lines."""
        data = (self.workdir / "stderr").read_bytes()[-STDERR_TAIL:].decode("utf-8", "replace")
        lines = [line.strip() for line in data.splitlines() if line.strip()]
        fatal = [line for line in lines if line.startswith("Fatal Python error")]
        if fatal:
            frames = [line for line in lines if "candidate.py" in line]
            return "; ".join(fatal[-1:] + frames[:1])[:400]
        return " | ".join(lines[-3:])[-400:]


def _tree_rss(pid: int) -> int:
    """Resident memory of a process and its descendants (0 once it is gone)."""
    try:
        root = psutil.Process(pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.Error:
        return 0
    total = 0
    for p in procs:
        try:
            total += p.memory_info().rss
        except psutil.Error:
            pass
    return total


def read_samples(path: str):
    """The samples of a tcgen file, in order: JSONL (a line each) or Parquet (a row each,
    `tcgen generate --output_format parquet`). A line or row that is not a sample raises
    GradeInputError naming it."""
    from pydantic import ValidationError

    if not os.path.isfile(path):
        raise GradeInputError(f"samples: {path} is not a file")
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        rows = (row for batch in pq.ParquetFile(path).iter_batches() for row in batch.to_pylist())
        where = "row"
    else:
        rows = (line for line in open(path, encoding="utf-8") if line.strip())
        where = "line"
    for k, row in enumerate(rows, 1):
        try:
            yield Sample.model_validate_json(row) if isinstance(row, str) else Sample.model_validate(row)
        except (ValidationError, ValueError) as exc:
            raise GradeInputError(f"samples: {path} {where} {k} is not a tcgen sample "
                                  f"({str(exc).splitlines()[0]})") from None


def select_sample(path: str, *, index: int | None = None, sample_id: str | None = None) -> Sample:
    """The sample of `path` with that index (its `index` field) or id; with neither, the
    file's only sample."""
    if index is not None and sample_id is not None:
        raise GradeInputError("pass --index or --id, not both")
    samples = read_samples(path)
    if index is None and sample_id is None:
        first = next(samples, None)
        if first is None:
            raise GradeInputError(f"samples: {path} holds no samples")
        if next(samples, None) is not None:
            raise GradeInputError(f"samples: {path} holds several samples; pick one with --index N or --id ID")
        return first
    count = 0
    for count, sample in enumerate(samples, 1):
        if sample.index == index or sample.id == sample_id:
            return sample
    wanted = f"index {index}" if index is not None else f"id {sample_id}"
    raise GradeInputError(f"samples: no sample with {wanted} in {path} ({count} samples)")
