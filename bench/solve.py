"""Solver benchmark: cost per accepted sample, per level, validation off, one process.

    python -m bench.solve [--count 100] [--min_flops 2**34] [--max_flops 2**35] [--json]
    python -m bench.solve --num_ops 20 --count 100      # programs of 20 drawn operators instead of levels

Level 0 runs every operator once; levels 1-4 run `--count` indices. For each level it
prints samples, failures, median / p90 / p99 / max seconds per accepted sample (failures
included in the time of the next success, as a user would feel them), and the share of
samples inside the window without relaxing. Level 1 walks fixed operator pairs, many of
them too cheap to reach a large window under the memory caps (e.g. Abs then ReLU: at most
2 FLOPs per element of a 2**30-element tensor); `reachable_inside` reports the share among
the pairs that `reachable_estimate` says can reach it. With `--num_ops N`, one row of
`--count` indices of N drawn operators (the spec's num_ops) replaces the levels.
"""
from __future__ import annotations

import argparse
import json
import math
import statistics
import time

from generator_core import OPERATORS, GenerationError, GenerationSpec, generate
from generator_core.draws import combination, reachable_estimate


def percentile(sorted_values: list[float], q: float) -> float:
    """Nearest-rank percentile: the smallest value with at least q of the values at or below it."""
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def bench_level(level: int | None, count: int, min_flops: int, max_flops: int, seed: int,
                num_ops: int | None = None) -> dict:
    spec = GenerationSpec(level=level, num_ops=num_ops, min_flops=min_flops, max_flops=max_flops, seed=seed,
                          validate=False)
    n = len(OPERATORS) if spec.walks and level == 0 else count
    times, failures, inside, reachable, reachable_inside = [], 0, 0, 0, 0
    pending = 0.0
    for index in range(n):
        start = time.perf_counter()
        try:
            sample = generate(spec, index)
        except GenerationError:
            failures += 1
            pending += time.perf_counter() - start
            continue
        times.append(time.perf_counter() - start + pending)
        pending = 0.0
        ok = not sample.flops_window_relaxed
        inside += ok
        if reachable_estimate(combination(spec, index), spec) >= min_flops:
            reachable += 1
            reachable_inside += ok
    times.sort()
    accepted = len(times)
    return {
        "level": level if num_ops is None else f"num_ops {num_ops}", "samples": n, "failures": failures,
        "median_s": round(statistics.median(times), 4) if times else None,
        "p90_s": round(percentile(times, 0.90), 4) if times else None,
        "p99_s": round(percentile(times, 0.99), 4) if times else None,
        "max_s": round(times[-1], 4) if times else None,
        "inside_window": round(inside / max(accepted, 1), 4),
        "reachable_inside": round(reachable_inside / max(reachable, 1), 4),
        "reachable_combos": reachable,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--min_flops", type=int, default=2**34)
    parser.add_argument("--max_flops", type=int, default=2**35)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--num_ops", type=int, help="one row of programs of this many drawn operators")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if args.num_ops:
        rows = [bench_level(None, args.count, args.min_flops, args.max_flops, args.seed, args.num_ops)]
    else:
        rows = [bench_level(lvl, args.count, args.min_flops, args.max_flops, args.seed) for lvl in args.levels]
    if args.json:
        print(json.dumps({"min_flops": args.min_flops, "max_flops": args.max_flops, "levels": rows}, indent=2))
        return
    print(f"bench.solve: window {args.min_flops}..{args.max_flops}, validation off, 1 process, CP-SAT 1 worker")
    print(f"{'level':>5} {'samples':>7} {'fail':>4} {'median':>8} {'p90':>8} {'p99':>8} {'max':>8} {'inside':>7} {'reach.inside':>12}")
    for r in rows:
        print(f"{r['level']:>5} {r['samples']:>7} {r['failures']:>4} {r['median_s']:>8.4f} {r['p90_s']:>8.4f} "
              f"{r['p99_s']:>8.4f} {r['max_s']:>8.4f} {r['inside_window']:>7.1%} "
              f"{r['reachable_inside']:>7.1%} ({r['reachable_combos']})")


if __name__ == "__main__":
    main()
