"""The grader's child process: runs a sample's reference and a candidate under the sample's
grading contract and writes the verdict as JSON. Started by generator_core.grade (never
imported by it, nor by the REST service) as `python grade_worker.py WORKDIR`.

It imports nothing of tcgen (only torch), so that what it sets up (limits, flags, the
candidate's module) is all there is in the process. WORKDIR holds request.json (written by
the parent), reference.py and candidate.py (loaded as modules from files, so that tools
that read a function's source, such as triton.jit, work), and receives `progress` (one
line per stage: what the parent reports if the process dies or is killed) and result.json.
"""
from __future__ import annotations

import faulthandler
import json
import os
import resource
import statistics
import sys
import time
import traceback


def _limit_memory(request: dict) -> None:
    """Before torch is imported: no core files; on the CPU the address space is capped
    (allocations beyond it fail as MemoryError / "can't allocate memory"). CUDA reserves
    far more address space than it uses, so there the host side is capped by
    RLIMIT_DATA (writable private memory, which CUDA's reservations are not) and the
    parent's resident-memory watchdog, and the GPU by torch's allocator fraction."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    limit = request["memory_limit_bytes"]
    if request["device"] == "cpu":
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    elif request.get("host_memory_limit_bytes"):
        host = request["host_memory_limit_bytes"]
        resource.setrlimit(resource.RLIMIT_DATA, (host, host))


class Stage:
    """Writes each stage to WORKDIR/progress as it starts (flushed: the parent reads it
    after a crash or a kill)."""

    def __init__(self, path: str):
        self.file = open(path, "a", buffering=1, encoding="utf-8")
        self.now = "starting"

    def __call__(self, now: str) -> None:
        self.now = now
        self.file.write(now + "\n")
        self.file.flush()


def _load_module(path: str, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)  # the sample's program or the grader's caller's candidate
    return module


def _describe(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:400]


def _is_memory_error(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, (MemoryError, torch.OutOfMemoryError)) or (
        isinstance(exc, RuntimeError) and ("can't allocate memory" in str(exc) or "out of memory" in str(exc)))


class Flags:
    """The backend precision flags a program leaves when it loads (the reference pins full
    float32 convolutions itself); each side runs under its own."""

    def __init__(self):
        import torch

        self.values = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
                       torch.backends.mkldnn.enabled)

    def apply(self) -> None:
        import torch

        (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32,
         torch.backends.mkldnn.enabled) = self.values


def _as_list(result) -> list:
    return list(result) if isinstance(result, (list, tuple)) else [result]


def _shares_storage(a, b) -> bool:
    import torch

    if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)) or a.device != b.device:
        return False
    try:
        return a.untyped_storage().data_ptr() == b.untyped_storage().data_ptr() and a.untyped_storage().nbytes() > 0
    except RuntimeError:  # tensors without storage (some subclasses)
        return False


class Program:
    """One side (reference or candidate): its entry point, built per input seed."""

    def __init__(self, module, entry: str, device: str):
        self.module, self.entry, self.device = module, entry, device

    def build(self, init_inputs: list):
        """The callable for one input seed (seed already set): a fresh module from the
        constructor arguments (KernelBench's convention), or the function itself."""
        import torch

        target = getattr(self.module, self.entry)
        if self.entry == "fused_operator":
            return target
        with torch.device(self.device):
            model = target(*init_inputs)
        return model.to(self.device) if isinstance(model, torch.nn.Module) else model


def _entry_points(task: dict, candidate) -> tuple[str, str]:
    """(the reference's entry point, the candidate's): ModelNew against a kernelbench
    sample; fused_operator (or else ModelNew) against a fused_operator sample."""
    if task["format"] == "kernelbench":
        if not hasattr(candidate, "ModelNew"):
            raise LookupError("the candidate defines no ModelNew (a kernelbench sample's candidate is "
                              "`class ModelNew(nn.Module)` with Model's constructor and forward signature)")
        return "Model", "ModelNew"
    for name in ("fused_operator", "ModelNew"):
        if hasattr(candidate, name):
            return "fused_operator", name
    raise LookupError("the candidate defines neither fused_operator nor ModelNew")


def compare(ref: list, out: list, task: dict, inputs: list, views: list[set[int]]) -> tuple[str | None, float | None]:
    """(the first problem, in output order, or None; the largest absolute error of the
    float outputs). The trivial-answer guard first: an output that is one of the inputs,
    or shares an input's memory where the reference's output does not (`views[i]`: the
    inputs whose memory reference output i shares)."""
    import torch

    grading = task["grading"]
    atol, rtol, exact = grading["atol"], grading["rtol"], set(grading["exact_outputs"])
    if len(out) != len(ref):
        return f"returned {len(out)} outputs, expected {len(ref)}", None
    worst = None
    for i, (r, c) in enumerate(zip(ref, out)):
        if not isinstance(c, torch.Tensor):
            return f"output {i} is a {type(c).__name__}, not a tensor", worst
        for j, x in enumerate(inputs):
            if (c is x or _shares_storage(c, x)) and j not in views[i]:
                return f"trivial answer: output {i} is input {j} (or shares its memory)", worst
        if list(c.shape) != list(r.shape):
            return f"shape mismatch: output {i} has shape {list(c.shape)}, expected {list(r.shape)}", worst
        if c.dtype != r.dtype:
            return f"dtype mismatch: output {i} is {c.dtype}, expected {r.dtype}", worst
        c = c.to(r.device)
        if i in exact or not r.is_floating_point():
            if not torch.equal(c, r):
                return f"wrong values: output {i} (compared exactly) differs in {int((c != r).sum())} elements", worst
            continue
        top, wrong = 0.0, 0
        for r64, c64 in _chunks(r, c):
            error = c64.sub_(r64).abs_()
            wrong += int((~(error <= r64.abs_().mul_(rtol).add_(atol))).sum())  # NaN counts as wrong
            top = max(top, float(error.nan_to_num_(nan=float("inf")).max()))
        worst = top if worst is None else max(worst, top)
        if wrong:
            return (f"wrong values: output {i}: max error {top:.3g} > atol {atol:g} + rtol {rtol:g} x |reference| "
                    f"in {wrong} of {r.numel()} elements"), worst
    return None, worst


CHUNK = 2**24  # elements compared at a time: float64 copies of whole outputs would need GiBs


def _chunks(*tensors):
    """Float64 copies of the same CHUNK-element slices of same-shaped tensors (flattened)."""
    flat = [t.reshape(-1) for t in tensors]
    for start in range(0, flat[0].numel(), CHUNK):
        yield [f[start:start + CHUNK].double() for f in flat]


def loose_guard(ref: list, inputs: list, task: dict) -> str | None:
    """The contract's trivial answers, re-checked on this device on the grader's own
    reference outputs: zeros, the output's mean and every same-shaped input must fail
    each float output at loose_tolerance. If one passes, the sample cannot tell a correct
    candidate from a trivial one here, and no verdict is given as correct."""
    import torch

    tol = task["grading"]["loose_tolerance"]

    def passes(r, other) -> bool:
        """allclose(other, r, tol, tol), chunk by chunk (other: a tensor of r's shape, or a number)."""
        pairs = _chunks(r, other) if isinstance(other, torch.Tensor) else ((r64, other) for (r64,) in _chunks(r))
        return all(bool(((r64 - o).abs_() <= r64.abs().mul_(tol).add_(tol)).all()) for r64, o in pairs)

    for i, r in enumerate(ref):
        if not r.is_floating_point() or i in task["grading"]["exact_outputs"]:
            continue
        for name, other in (("zeros", 0.0), ("its mean", float(r.mean(dtype=torch.float64)))):
            if passes(r, other):
                return f"ungradeable here: {name} pass reference output {i} at loose_tolerance {tol:g}"
        for j, x in enumerate(inputs):
            if isinstance(x, torch.Tensor) and x.shape == r.shape and passes(r, x.to(r.device)):
                return f"ungradeable here: input {j} passes reference output {i} at loose_tolerance {tol:g}"
    return None


def _time(sides: list, inputs: list, device: str, runs: int, warmup: int) -> list[list[float]]:
    """Milliseconds of each of `runs` calls of each side after `warmup` calls, the sides
    interleaved call by call (so that a busy machine slows both alike): CUDA events on a
    GPU, perf_counter on the CPU. `sides`: (callable, Flags) pairs."""
    import torch

    cuda = device.startswith("cuda")
    for fn, flags in sides:
        flags.apply()
        for _ in range(warmup):
            fn(*inputs)
    if cuda:
        torch.cuda.synchronize()
    times: list[list[float]] = [[] for _ in sides]
    for _ in range(runs):
        for (fn, flags), spent in zip(sides, times):
            flags.apply()
            if cuda:
                start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                start.record()
                fn(*inputs)
                end.record()
                end.synchronize()
                spent.append(start.elapsed_time(end))
            else:
                started = time.perf_counter()
                fn(*inputs)
                spent.append((time.perf_counter() - started) * 1000)
    return times


def _device_name(device: str) -> str:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            return next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        return "cpu"


def _setup(request: dict) -> None:
    import torch

    device = torch.device(request["device"])
    if device.type == "cuda":
        index = torch.cuda.current_device() if device.index is None else device.index
        torch.cuda.set_device(index)
        total = torch.cuda.get_device_properties(index).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, request["memory_limit_bytes"] / total), index)
    if device.type == "cpu" and request["task"]["dtype"] != "float32":
        torch.backends.mkldnn.enabled = False  # as validation: oneDNN's half-type conv2d reads unwritten memory
    torch.set_grad_enabled(False)


def grade(request: dict, workdir: str, stage: Stage) -> dict:
    """The verdict as a dict of GradeResult's fields. The candidate's failures are caught
    here; the reference's propagate (main reports them as not graded)."""
    task, device = request["task"], request["device"]
    result = {"compiled": False, "correct": False, "graded": True, "reason": None, "max_error": None, "seeds": [],
              "device": "cuda" if device.startswith("cuda") else device, "device_name": _device_name(device)}
    _setup(request)
    stage("loading the reference")
    reference = _load_module(os.path.join(workdir, "reference.py"), "tcgen_reference")
    ref_flags = Flags()
    stage("loading the candidate")
    loaded = _load_candidate(workdir, task)
    if isinstance(loaded, str):
        return {**result, "reason": loaded}
    candidate, ref_entry, cand_entry = loaded
    cand_flags = Flags()
    result["compiled"] = True
    ref, cand = Program(reference, ref_entry, device), Program(candidate, cand_entry, device)
    for k, seed in enumerate(task["grading"]["input_seeds"]):
        stage(f"running the reference on input seed #{k}")
        ref_fn = cand_fn = inputs = weights = None  # the previous seed's, before this one's are made
        ref_fn, init_inputs, inputs, ref_out, views, weights = _run_reference(reference, ref, ref_flags, device, seed)
        guard = loose_guard(ref_out, inputs + weights, task)
        if guard:
            return {**result, "graded": False, "reason": guard}
        stage(f"running the candidate on input seed #{k}")
        cand_flags.apply()
        try:
            cand_fn, out = _run_candidate(cand, seed, init_inputs, inputs, device)
        except BaseException as exc:  # noqa: BLE001
            return {**result, "reason": f"{_failure(exc)} (input seed #{k})"}
        reason, error = compare(ref_out, out, task, inputs, views)
        result["seeds"].append({"seed": seed, "max_error": error, "passed": reason is None})
        if error is not None:
            result["max_error"] = max(error, result["max_error"] or 0.0)
        if reason:
            return {**result, "reason": f"{reason} (input seed #{k})"}
        del out, ref_out
    result["correct"] = True
    if request["measure_speed"]:
        try:
            result.update(_speed(request, (ref_fn, ref_flags), (cand_fn, cand_flags), inputs, stage))
        except BaseException as exc:  # noqa: BLE001
            if stage.now != "timing the candidate":
                raise
            return {**result, "correct": False, "reason": f"{_failure(exc)} (timing the candidate)"}
    return result


def _load_candidate(workdir: str, task: dict) -> tuple | str:
    """(candidate module, reference entry point, candidate entry point), or why it does not load."""
    try:
        candidate = _load_module(os.path.join(workdir, "candidate.py"), "tcgen_candidate")
        ref_entry, cand_entry = _entry_points(task, candidate)
    except BaseException as exc:  # noqa: BLE001 - SystemExit and the like from the candidate's module too
        if _is_memory_error(exc):
            return f"memory limit: {_describe(exc)} (loading the candidate)"
        return f"does not load: {_describe(exc)}"
    return candidate, ref_entry, cand_entry


def _run_reference(reference, ref: Program, ref_flags: Flags, device: str, seed: int) -> tuple:
    """Runs the reference on one input seed: (its callable, init inputs, inputs, outputs, which
    inputs each output is a view of, its weights)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    ref_flags.apply()
    torch.manual_seed(seed)
    init_inputs = getattr(reference, "get_init_inputs", list)()
    ref_fn = ref.build(init_inputs)
    with torch.device(device):
        inputs = [x.to(device) if isinstance(x, torch.Tensor) else x for x in reference.get_inputs()]
    ref_out = _as_list(ref_fn(*inputs))
    views = [{j for j, x in enumerate(inputs) if _shares_storage(o, x)} for o in ref_out]
    ref_out = [o.clone() if view else o for o, view in zip(ref_out, views)]  # safe from a candidate's writes
    weights = list(ref_fn.parameters()) if isinstance(ref_fn, torch.nn.Module) else []
    return ref_fn, init_inputs, inputs, ref_out, views, weights


def _run_candidate(cand: Program, seed: int, init_inputs, inputs: list, device: str) -> tuple:
    """Runs the candidate on the reference's inputs: (its callable, its outputs); its failures raise."""
    import torch

    torch.manual_seed(seed)  # KernelBench's convention: an identical copy gets identical weights
    cand_fn = cand.build(init_inputs)
    out = _as_list(cand_fn(*inputs))
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return cand_fn, out


def _failure(exc: BaseException) -> str:
    return f"{'memory limit' if _is_memory_error(exc) else 'crashed'}: {_describe(exc)}"


def _speed(request: dict, ref: tuple, cand: tuple, inputs: list, stage: Stage) -> dict:
    """Median times of the eager reference and the candidate on the last seed's inputs
    (and of torch.compile's reference when asked). `ref` and `cand`: (callable, Flags)."""
    import torch

    device, runs, warmup = request["device"], request["runs"], request["warmup"]
    stage("timing the candidate")  # a candidate that fails on a later call fails here
    reference_ms, candidate_ms = map(statistics.median, _time([ref, cand], inputs, device, runs, warmup))
    speed = {"timing": "cuda_events" if device.startswith("cuda") else "perf_counter", "runs": runs,
             "reference_ms": reference_ms, "candidate_ms": candidate_ms,
             "speedup": reference_ms / candidate_ms if candidate_ms > 0 else None}
    if request["compile"]:
        stage("timing torch.compile's reference")
        try:
            compiled_ms = statistics.median(_time([(torch.compile(ref[0]), ref[1])], inputs, device, runs, warmup)[0])
            speed.update(compiled_reference_ms=compiled_ms,
                         speedup_vs_compiled=compiled_ms / candidate_ms if candidate_ms > 0 else None)
        except Exception as exc:  # noqa: BLE001 - a reference torch.compile cannot take is a finding
            speed["compile_error"] = _describe(exc)
    return speed


def main(workdir: str) -> int:
    if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
        sys.path.pop(0)  # this file's folder is not a place to import from
    with open(os.path.join(workdir, "request.json"), encoding="utf-8") as f:
        request = json.load(f)
    _limit_memory(request)
    faulthandler.enable()  # a segfault's Python stack goes to stderr, which the parent keeps the end of
    stage = Stage(os.path.join(workdir, "progress"))
    try:
        result = grade(request, workdir, stage)
    except BaseException as exc:  # noqa: BLE001 - the reference failed (or the grader did): no verdict
        traceback.print_exc()
        kind = "memory limit" if _is_memory_error(exc) else "reference failed" if "reference" in stage.now else "grader error"
        result = {"compiled": stage.now not in ("starting", "loading the reference", "loading the candidate"),
                  "correct": False, "graded": False, "reason": f"{kind}: {_describe(exc)} ({stage.now})"}
    stage("done")
    with open(os.path.join(workdir, "result.tmp"), "w", encoding="utf-8") as f:
        json.dump(result, f)
    os.replace(os.path.join(workdir, "result.tmp"), os.path.join(workdir, "result.json"))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)  # no interpreter teardown: a candidate's threads or atexit hooks cannot hang it


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
