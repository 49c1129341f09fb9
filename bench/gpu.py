"""GPU validation: throughput, busy fraction, time against the hardware floor, faults, baselines.

    python -m bench.gpu                      # on a machine with a GPU: everything, in one call
    python -m bench.gpu --device cpu --count 20 --min-flops 65536 --max-flops 4194304 --baseline-count 10
                                             # the same code paths on the CPU, small

For each level at the window (default 2**34..2**35, float32; level 2 in bfloat16 too) it
runs the engine with every solver worker and one validation worker on the device, and
prints validated samples/s, the validation worker's busy fraction (device time of inputs,
program and checks over the run's wall time), and per sample the floor
max(bytes / measured bandwidth, FLOPs / measured peak) against the measured times. `bytes`
is every tensor the eager program allocates, each written at least once: a lower bound of
its traffic. Then: an injected OOM and an injected sticky CUDA error (real ones on a GPU),
each run compared with a fault-free run; and a run with baselines, every one checked
against its floor. Results go to bench/results/gpu-<device>-<date>.json (or --out).
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from unittest import mock

import torch

from bench.gpu_nodes import SETTINGS, node_rows, summary
from bench.solve import percentile
from generator_core import GenerationSpec, Sample
from generator_core.baseline import device_name
from service.engine import Engine, Observer
from service.engine.faults import FAULT_ENV

RESULTS = Path(__file__).parent / "results"
PARTS = ("validate.inputs", "validate.program", "validate.check")


class Timings(Observer):
    """Every answer's timings, by index; the last validation of an index is its sample's."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.by_index: dict[int, dict[str, float]] = {}
        self.device_seconds = 0.0  # inputs + program + checks of every validation, rejected ones too
        self.solve_seconds = 0.0  # solver workers' time in solve steps
        self.validate_seconds = 0.0  # validation workers' whole steps (device and CPU parts)

    def answered(self, kind: str, index: int, timings: dict[str, float]) -> None:
        self.device_seconds += sum(timings.get(p, 0.0) for p in PARTS)
        self.solve_seconds += timings.get("solve", 0.0)
        self.validate_seconds += timings.get("validate", 0.0)
        if kind == "done":
            self.by_index[index] = timings


def hardware(device: str) -> dict:
    """Measured copy bandwidth (bytes read + written per second) and matmul peak by dtype."""
    def timed(fn, repeat: int) -> float:
        fn()
        sync()
        start = time.perf_counter()
        for _ in range(repeat):
            fn()
        sync()
        return (time.perf_counter() - start) / repeat

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    n = 2**28 if device == "cuda" else 2**24
    src, dst = torch.empty(n, device=device), torch.empty(n, device=device)
    bandwidth = 2 * 4 * n / timed(lambda: dst.copy_(src), 20)
    src = dst = None  # free them before the matmuls
    peak = {}
    # float32 at the TF32 tensor-core rate: PyTorch runs float32 convolutions in TF32 by
    # default (cudnn.allow_tf32), so the true-float32 matmul rate would not bound them.
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    for dtype in (torch.float32, torch.bfloat16):
        m = 8192 if device == "cuda" else 1024
        a, b = torch.randn(m, m, device=device, dtype=dtype), torch.randn(m, m, device=device, dtype=dtype)
        peak[str(dtype).removeprefix("torch.")] = 2 * m**3 / timed(lambda: a @ b, 10)
    torch.backends.cuda.matmul.allow_tf32 = tf32
    if device == "cuda":
        torch.cuda.empty_cache()
    return {"bandwidth_bytes_per_s": bandwidth, "peak_flops_per_s": peak}


def floor_s(sample: dict, hw: dict) -> float:
    return max(sample["bytes"] / hw["bandwidth_bytes_per_s"], sample["flops"] / hw["peak_flops_per_s"][sample["dtype"]])


def run(spec: GenerationSpec, count: int, workers: int, device: str) -> tuple[list[str | None], dict, Timings]:
    """`count` samples on a warm engine: their lines, the run's figures, and the timings."""
    timings = Timings()
    with Engine(solver_workers=workers, device=device, cpu_validation="worker", observer=timings) as engine:
        engine.start(validation=True)
        engine.wait_ready(timeout=600)
        list(engine.run(spec.model_copy(update={"seed": spec.seed + 1}), range(min(8, count))))  # warm the device
        timings.reset()
        warm_counts = collections.Counter(engine.progress.validated)
        start = time.perf_counter()
        lines = [o.json for o in engine.run(spec, range(count))]
        wall = time.perf_counter() - start
        restarts = engine.progress.restarts
        by_device = engine.progress.validated - warm_counts
    done = sum(line is not None for line in lines)
    return lines, {"count": count, "validated": done, "wall_s": wall, "samples_per_s": done / wall,
                   "busy_fraction": timings.device_seconds / wall, "restarts": restarts,
                   "solver_busy_fraction": timings.solve_seconds / (wall * workers),
                   "validation_step_seconds": timings.validate_seconds, "by_device": dict(by_device)}, timings


def _tensor_bytes(shapes: list[list[int]], dtypes: list[str]) -> int:
    return sum(math.prod(shape) * torch.empty(0, dtype=getattr(torch, d)).element_size() for shape, d in zip(shapes, dtypes))


def per_sample(lines: list[str | None], timings: Timings, hw: dict, device: str) -> dict:
    """Floors and measured times of the samples, as medians, and every sample's check."""
    rows, bad = [], 0
    for line in lines:
        if line is None:
            bad += 1
            continue
        s = Sample.model_validate_json(line).model_dump()  # records hold validation as JSON text
        v = s["validation"]
        bad += not (v and v["passed"] and v["device"] == ("cuda" if device == "cuda" else "cpu")
                    and [o["shape"] for o in v["outputs"]] == s["output_shapes"])
        t = timings.by_index[s["index"]]
        bw = hw["bandwidth_bytes_per_s"]
        rows.append({"floor": floor_s(s, hw), "device": sum(t[p] for p in PARTS), "wall": t["validate"],
                     **{p.split(".")[1]: t[p] for p in PARTS}, "index": s["index"], "ops": s["ops"],
                     # what making the inputs must write, and what the checks must read
                     "inputs_floor": _tensor_bytes(s["input_shapes"], [s["dtype"]] * len(s["input_shapes"])) / bw,
                     "check_floor": _tensor_bytes(s["output_shapes"], [o["dtype"] for o in v["outputs"]]) / bw})
    slowest = sorted(rows, key=lambda r: -r["device"])[:5]
    per_sample_ms = [{"index": r["index"], "ops": r["ops"], "device_ms": r["device"] * 1000,
                      "floor_ms": r["floor"] * 1000} for r in rows]
    rows = [{k: v for k, v in r.items() if k not in ("index", "ops")} for r in rows]
    med = {k: statistics.median(r[k] for r in rows) for k in rows[0]} if rows else {}
    ratios = sorted(r["device"] / r["floor"] for r in rows)
    program_ratios = sorted(r["program"] / r["floor"] for r in rows)
    total = sum(r["device"] for r in rows)
    return {"not_passing": bad, "median_ms": {k: v * 1000 for k, v in med.items()},
            "device_s_total": total, "slowest": [{"index": r["index"], "ops": r["ops"], "device_ms": r["device"] * 1000,
                                                  "floor_ms": r["floor"] * 1000,
                                                  "share_of_device_time": r["device"] / total} for r in slowest],
            "median_device_over_floor": statistics.median(ratios) if ratios else None,
            "p90_device_over_floor": percentile(ratios, 0.9) if ratios else None,
            "median_program_over_floor": statistics.median(program_ratios) if program_ratios else None,
            "samples": per_sample_ms}


def fault_runs(spec: GenerationSpec, count: int, workers: int, device: str) -> dict:
    """A fault-free run, then one with an OOM (twice: a fresh worker retries) and one with a
    sticky CUDA error at some index: each faulted run must equal the fault-free one."""
    reference, _, _ = run(spec, count, workers, device)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for kind, times in (("oom", 2), ("sticky", 1)):
            counter = Path(tmp) / kind
            with mock.patch.dict(os.environ, {FAULT_ENV: f"{kind}:{count // 2}:{counter}:{times}"}):
                lines, figures, _ = run(spec, count, workers, device)
            results[kind] = {"fired": int(counter.read_text()) if counter.exists() else 0,
                             "restarts": figures["restarts"], "equal_to_fault_free": lines == reference}
    return results


def baseline_run(spec: GenerationSpec, count: int, workers: int, device: str, hw: dict) -> dict:
    lines, figures, _ = run(spec.model_copy(update={"baselines": True}), count, workers, device)
    samples = [Sample.model_validate_json(line).model_dump() for line in lines if line is not None]
    eager_over_floor = sorted(s["baseline"]["eager_ms"] / 1000 / floor_s(s, hw) for s in samples if s.get("baseline"))
    return {"samples": len(samples), "with_baseline": sum(bool(s.get("baseline")) for s in samples),
            "eager_at_least_floor": sum(r >= 1 for r in eager_over_floor),
            "eager_over_floor_min": eager_over_floor[0] if eager_over_floor else None,
            "eager_over_floor_median": statistics.median(eager_over_floor) if eager_over_floor else None,
            "baseline_device": samples[0]["baseline"]["device"] if samples else None,
            "samples_per_s": figures["samples_per_s"]}


def compile_run(spec: GenerationSpec, count: int, workers: int, device: str) -> dict:
    lines, _, _ = run(spec.model_copy(update={"baselines": True, "baseline_compile": True}), count, workers, device)
    b = [Sample.model_validate_json(line).model_dump()["baseline"] for line in lines if line is not None]
    ok = [x for x in b if x["compiled"]]
    return {"samples": len(b), "compiled": len(ok), "errors": sorted({x["compile_error"] for x in b if not x["compiled"]}),
            "median_compile_s": statistics.median(x["compile_s"] for x in ok) if ok else None,
            "median_eager_over_compiled": statistics.median(x["eager_ms"] / x["compiled_ms"] for x in ok) if ok else None}


def explain(line: str, device: str) -> dict:
    """Where one slow program's time goes: its top kernels (torch.profiler), and its time
    with torch's deterministic algorithms on (as validation runs) and off."""
    from torch.profiler import ProfilerActivity, profile

    from generator_core.baseline import time_runs
    from generator_core.validate import load_program

    s = json.loads(line)
    loaded = load_program(s["pytorch"], s["format"])
    with torch.no_grad():
        instance = loaded.instantiate(device, 0)
        program, inputs = instance.program, instance.inputs
        times = {}
        for deterministic in (True, False):  # one run each: a slow program may take seconds
            torch.use_deterministic_algorithms(deterministic, warn_only=True)
            times[f"deterministic_{deterministic}_ms"] = time_runs(program, inputs, device, 1, 0)[0] * 1000
        torch.use_deterministic_algorithms(False)
        activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == "cuda" else [])
        with profile(activities=activities) as prof:
            program(*inputs)
            if device == "cuda":
                torch.cuda.synchronize()
    key = "self_device_time_total" if device == "cuda" else "self_cpu_time_total"
    top = sorted(prof.key_averages(), key=lambda e: -getattr(e, key, 0))[:4]
    return {"ops": s["ops"], "input_shapes": s["input_shapes"], "flops": s["flops"], "bytes": s["bytes"], **times,
            "top": [(e.key, round(getattr(e, key, 0) / 1000, 3)) for e in top]}


def node_breakdown(lines: list[str | None], count: int, device: str, hw: dict) -> dict:
    """bench.gpu_nodes over `count` samples spread evenly over the run (not the slowest)."""
    done = [line for line in lines if line is not None]
    picked = done[::max(1, len(done) // count)][:count]
    rows = [r for line in picked for r in node_rows(line, device, hw)]
    return {"samples": len(picked), "by_op": summary(rows), "rows": rows}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", choices=["cuda", "cpu"])
    p.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    p.add_argument("--count", type=int, default=300, help="samples per level")
    p.add_argument("--min-flops", type=int, default=2**34)
    p.add_argument("--max-flops", type=int, default=2**35)
    p.add_argument("--workers", type=int, default=max(1, (os.cpu_count() or 2) - 1))
    p.add_argument("--fault-count", type=int, default=40)
    p.add_argument("--baseline-count", type=int, default=200)
    p.add_argument("--compile-count", type=int, default=0, help="samples also timed under torch.compile")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--explain", type=int, default=3, help="profile this many of each level's slowest samples")
    p.add_argument("--nodes", type=int, default=0,
                   help="time each node of this many samples per level on its own (bench.gpu_nodes)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    hw = hardware(args.device)
    name = device_name(args.device)
    print(f"device {name}: copy bandwidth {hw['bandwidth_bytes_per_s'] / 1e9:.0f} GB/s, matmul peak "
          + ", ".join(f"{k} {v / 1e12:.1f} TFLOP/s" for k, v in hw["peak_flops_per_s"].items())
          + f"; {args.workers} solver workers, window {args.min_flops}..{args.max_flops}")
    report = {"device": name, "torch": torch.__version__, "date": datetime.date.today().isoformat(),
              "args": {k: str(v) for k, v in vars(args).items()}, "hardware": hw, "levels": []}
    out = args.out or RESULTS / f"gpu-{name.replace(' ', '_')}-{report['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def save() -> None:  # after every stage: a run cut short keeps what it measured
        out.write_text(json.dumps(report, indent=1))

    # Faults and baselines first: they are pass/fail checks, the level table is figures.
    spec2 = GenerationSpec(level=2, seed=args.seed + 100, min_flops=args.min_flops, max_flops=args.max_flops)
    if args.fault_count:
        report["faults"] = fault_runs(spec2, args.fault_count, args.workers, args.device)
        print("faults:", json.dumps(report["faults"]), flush=True)
        save()
    if args.baseline_count:
        report["baselines"] = baseline_run(spec2, args.baseline_count, args.workers, args.device, hw)
        print("baselines:", json.dumps(report["baselines"]), flush=True)
        save()
    if args.compile_count:
        report["compile"] = compile_run(spec2, args.compile_count, args.workers, args.device)
        print("compile:", json.dumps(report["compile"]), flush=True)
        save()
    print(f"{'level':>5} {'dtype':>8} {'samples/s':>9} {'busy':>5} {'bad':>3} {'floor ms':>8} {'inputs':>7} "
          f"{'program':>7} {'check':>6} {'wall ms':>7} {'dev/floor':>9} {'p90':>6} {'prog/floor':>10}")
    for level, dtype in [(lv, "float32") for lv in args.levels] + [(2, "bfloat16")] * (2 in args.levels):
        spec = GenerationSpec(level=level, dtype=dtype, seed=args.seed, min_flops=args.min_flops,
                              max_flops=args.max_flops)
        lines, figures, timings = run(spec, args.count, args.workers, args.device)
        row = {"level": level, "dtype": dtype, **figures, **per_sample(lines, timings, hw, args.device)}
        report["levels"].append(row)
        m = row["median_ms"]
        print(f"{level:>5} {dtype:>8} {row['samples_per_s']:>9.1f} {row['busy_fraction']:>5.2f} {row['not_passing']:>3} "
              f"{m['floor']:>8.3f} {m['inputs']:>7.3f} {m['program']:>7.3f} {m['check']:>6.3f} {m['wall']:>7.2f} "
              f"{row['median_device_over_floor']:>9.2f} {row['p90_device_over_floor']:>6.2f} "
              f"{row['median_program_over_floor']:>10.2f}", flush=True)
        save()
        if args.nodes:
            row["nodes"] = node_breakdown(lines, args.nodes, args.device, hw)
            print("   where the time goes (per operator, time/floor of its nodes):", flush=True)
            for op, r in list(row["nodes"]["by_op"].items())[:12]:
                print(f"     {op:>16} nodes {r['nodes']:>3} excess share {r['share_of_excess']:.2f} "
                      + " ".join(f"{k} {r[f'median_{k}_over_floor']:.1f}" for k in SETTINGS), flush=True)
            save()
        row["explained"] = [explain(lines[r["index"]], args.device) for r in row["slowest"][:args.explain]]
        for e in row["explained"]:
            print("   slow:", json.dumps(e), flush=True)
        save()
    save()
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
