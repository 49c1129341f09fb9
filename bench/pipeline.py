"""Engine throughput: samples/s with validation off and on, for 1 and for all workers.

    python -m bench.pipeline [--level 2] [--count 1500] [--workers 1 2] [--device cpu]
                             [--min_flops 65536] [--max_flops 4194304] [--memory 2000] [--json]
                             [--backend local|ray]

`--backend ray` measures the engine on a Ray instance started here (all CPUs, no
dashboard) next to the local backend, run for run, and reports Ray's rate over local's.

Rates are steady-state: the engine is started and warmed up (workers spawned, first
samples done) before the clock starts. `bare` is the in-process rate of `generate` with
validation off, i.e. what `bench.solve` measures per core;
the engine with validation off is compared with bare x workers. `--memory N` then runs N
validated samples with all workers and reports the resident memory of the parent and every
worker process together, sampled as samples complete: just after warm-up vs at the end.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import time

import psutil

from generator_core import GenerationSpec
from generator_core import generate
from service.engine import Engine

WARMUP = 20


def bare_rate(spec: GenerationSpec, count: int) -> float:
    """What bench.solve measures: `generate` in a loop in this process (validation off)."""
    start = time.perf_counter()
    for index in range(count):
        generate(spec, index)
    return count / (time.perf_counter() - start)


def engine_rate(spec: GenerationSpec, count: int, workers: int, device: str, backend: str = "local") -> float:
    with Engine(solver_workers=workers, device=device, backend=backend) as engine:
        engine.start(validation=spec.validate_samples)
        engine.wait_ready()
        for _ in engine.run(spec, range(10**6, 10**6 + WARMUP)):  # indices unused by the timed run
            pass
        start = time.perf_counter()
        failed = sum(o.json is None for o in engine.run(spec, range(count)))
        rate = count / (time.perf_counter() - start)
    if failed:
        print(f"  ({failed} indices failed)")
    return rate


def tree_rss(pid: int) -> int:
    parent = psutil.Process(pid)
    total = 0
    for p in [parent] + parent.children(recursive=True):
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def memory_run(spec: GenerationSpec, count: int, workers: int, device: str) -> dict:
    """RSS of the parent and all workers together, every count/100 samples. 'Flat' compares
    the median of the samples just after warm-up (10-30%) with the median of the last 20%;
    the peak is reported apart: it is one large program in flight, bounded by
    max_total_bytes, not growth."""
    trace = []
    with Engine(solver_workers=workers, device=device) as engine:
        for k, _ in enumerate(engine.run(spec, range(count)), 1):
            if k % max(1, count // 100) == 0:
                trace.append((k, tree_rss(os.getpid())))
    early = statistics.median(r for k, r in trace if count * 0.1 <= k <= count * 0.3)
    late = statistics.median(r for k, r in trace if k >= count * 0.8)
    return {"samples": count, "rss_after_warmup_mb": round(early / 2**20), "rss_end_mb": round(late / 2**20),
            "peak_mb": round(max(r for _, r in trace) / 2**20), "growth_after_warmup": round(late / early - 1, 4),
            "trace_mb": [(k, round(r / 2**20)) for k, r in trace[:: max(1, len(trace) // 10)]]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--level", type=int, default=2)
    parser.add_argument("--count", type=int, default=1500)
    parser.add_argument("--workers", type=int, nargs="+", default=sorted({1, os.cpu_count() or 1}))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--min_flops", type=int, default=2**16)
    parser.add_argument("--max_flops", type=int, default=2**22)
    parser.add_argument("--memory", type=int, default=0, help="also run this many samples and report RSS")
    parser.add_argument("--repeat", type=int, default=2, help="runs per figure; the best is reported (the "
                        "machine's noise is one-sided: other load only slows a run down)")
    parser.add_argument("--backend", default="local", choices=["local", "ray"],
                        help="ray: also measure every row on Ray, against local")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.backend == "ray":
        import ray

        ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    base = dict(level=args.level, min_flops=args.min_flops, max_flops=args.max_flops)
    off, on = GenerationSpec(**base, validate=False), GenerationSpec(**base, validate=True)
    result = {"level": args.level, "window": [args.min_flops, args.max_flops], "device": args.device,
              "cpu_count": os.cpu_count(), "repeat": args.repeat, "rows": []}

    def best(measure, *a) -> float:
        return round(max(measure(*a) for _ in range(args.repeat)), 1)

    result["bare_per_core"] = best(bare_rate, off, args.count)
    for w in args.workers:
        row = {"workers": w, "validation_off": best(engine_rate, off, args.count, w, args.device),
               "validation_on": best(engine_rate, on, args.count, w, args.device)}
        row["off_vs_bare_x_workers"] = round(row["validation_off"] / (result["bare_per_core"] * w), 3)
        if args.backend == "ray":
            row["ray_validation_off"] = best(engine_rate, off, args.count, w, args.device, "ray")
            row["ray_validation_on"] = best(engine_rate, on, args.count, w, args.device, "ray")
            row["ray_over_local_off"] = round(row["ray_validation_off"] / row["validation_off"], 3)
            row["ray_over_local_on"] = round(row["ray_validation_on"] / row["validation_on"], 3)
        result["rows"].append(row)
    rows = result["rows"]
    if len(rows) > 1:
        result["speedup_on"] = round(rows[-1]["validation_on"] / rows[0]["validation_on"], 2)
        result["speedup_off"] = round(rows[-1]["validation_off"] / rows[0]["validation_off"], 2)
    if args.memory:
        result["memory"] = memory_run(on, args.memory, args.workers[-1], args.device)
    if args.json:
        print(json.dumps(result, indent=2))
        return
    print(f"bench.pipeline: level {args.level}, window {args.min_flops}..{args.max_flops}, device {args.device}, "
          f"{result['cpu_count']} CPUs, {args.count} samples per run, best of {args.repeat} runs")
    print(f"bare in-process solve rate (1 core, validation off): {result['bare_per_core']}/s")
    for r in rows:
        print(f"workers {r['workers']}: validation off {r['validation_off']}/s "
              f"({r['off_vs_bare_x_workers']:.0%} of bare x workers), validation on {r['validation_on']}/s")
        if args.backend == "ray":
            print(f"  on Ray: validation off {r['ray_validation_off']}/s ({r['ray_over_local_off']:.0%} of local), "
                  f"validation on {r['ray_validation_on']}/s ({r['ray_over_local_on']:.0%} of local)")
    if len(rows) > 1:
        print(f"speedup {rows[0]['workers']} -> {rows[-1]['workers']} workers: validation on "
              f"{result['speedup_on']}x, off {result['speedup_off']}x")
    if args.memory:
        m = result["memory"]
        print(f"memory, {m['samples']} validated samples, RSS of all processes: median {m['rss_after_warmup_mb']} MB "
              f"after warm-up (10-30%), {m['rss_end_mb']} MB over the last 20% (growth {m['growth_after_warmup']:.1%}); "
              f"peak {m['peak_mb']} MB (a large program in flight); trace {m['trace_mb']}")


if __name__ == "__main__":
    main()
