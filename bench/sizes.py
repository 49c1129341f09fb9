"""Program sizes: how much memory the generated programs allocate, per level.

    python -m bench.sizes [--count 600] [--min_flops 65536] [--max_flops 4194304] [--seed 1]

Solves (no validation) `--count` indices per level and prints the median, p99 and largest
`bytes` (every tensor the program allocates), how many exceed 256 MB, and the largest
programs' operators. The FLOPs window bounds arithmetic operators' tensors; this shows that
programs with operators that do no arithmetic (Transpose, Cat, Tril, ...) stay at the
window's scale too.
"""
from __future__ import annotations

import argparse
import statistics

from bench.solve import percentile
from generator_core import GenerationSpec
from generator_core.generate import solve_attempt

MB = 2**20


def level_sizes(level: int, count: int, min_flops: int, max_flops: int, seed: int) -> dict:
    spec = GenerationSpec(level=level, min_flops=min_flops, max_flops=max_flops, seed=seed, validate=False)
    solved = [c for c in (solve_attempt(spec, i, 0) for i in range(count)) if not isinstance(c, str)]
    sizes = sorted((c.fields["bytes"], c.fields["ops"]) for c in solved)
    values = [b for b, _ in sizes]
    return {"level": level, "solved": len(sizes), "median_mb": statistics.median(values) / MB,
            "p99_mb": percentile(values, 0.99) / MB, "max_mb": values[-1] / MB,
            "over_256mb": sum(b > 256 * MB for b in values), "largest": sizes[-3:][::-1]}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--count", type=int, default=600)
    p.add_argument("--min_flops", type=int, default=2**16)
    p.add_argument("--max_flops", type=int, default=2**22)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--levels", type=int, nargs="+", default=[0, 1, 2])
    args = p.parse_args()
    print(f"bench.sizes: window {args.min_flops}..{args.max_flops}, {args.count} indices per level, seed {args.seed}")
    print(f"{'level':>5} {'solved':>6} {'median MB':>9} {'p99 MB':>7} {'max MB':>7} {'>256MB':>6}  largest")
    for level in args.levels:
        r = level_sizes(level, args.count, args.min_flops, args.max_flops, args.seed)
        largest = ", ".join(f"{'->'.join(ops)} {b / MB:.0f} MB" for b, ops in r["largest"])
        print(f"{level:>5} {r['solved']:>6} {r['median_mb']:>9.2f} {r['p99_mb']:>7.1f} {r['max_mb']:>7.1f} "
              f"{r['over_256mb']:>6}  {largest}")


if __name__ == "__main__":
    main()
