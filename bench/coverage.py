"""Operator-space coverage: how evenly tcgen draws its operators, and whether levels are independent.

    python -m bench.coverage                                  # levels 2-4, both windows, 6000 draws each
    python -m bench.coverage --draws 1440 --seed 777 --windows small

Counts the operators of each index's first draw (attempt 0 of
generator_core.generate.combination: what the sampler picks, before any solving) over
--draws indices, per level and window ("default": the spec's 2**34..2**35; "small":
2**16..2**22). For each: every operator's count against the uniform expectation, the ratio
of the rarest and the commonest to it, the chi-square statistic against uniform with its
p-value (Wilson-Hilferty approximation: no scipy here), and each operator's counts as the
first, a middle and the last operator. Levels: the share of indices whose level-(k+1) list
starts with the level-k list of the same index (independent draws: about n**-k). Level 1:
distinct ordered pairs among the first n*n indices (a full walk: n*n), and how many of the
first 80 indices start with the commonest first operator (a spread walk: about 80/n).
With --solved, the operators of each index's first attempt that solves (CP-SAT, validation
off) instead of first draws: the mix after the solver's rejections and the redraws they cause.
--num_ops adds rows for programs of that many drawn operators. Each row also gives the
least uneven shares a window allows (`bound_carrier`, `bound_other`: every program needs
one operator that reaches the floor alone, see generator_core/draws.py).
With --kernelbench, also the share of KernelBench's level-1 and level-2 problems whose chain
(generator_core/kernelbench_problems.py), as `op_sequence` at the small window on the CPU,
yields a validated sample inside the window, with the chains that do not (slow: validation).
Results go to bench/results/coverage-<date>.json (or --out).
"""
from __future__ import annotations

import argparse
import collections
import datetime
import json
import math
from pathlib import Path

from generator_core import GenerationError, GenerationSpec, generate
from generator_core.draws import combination, draw_weights, reach_key
from generator_core.generate import MAX_ATTEMPTS, Candidate, solve_attempt
from generator_core.kernelbench_problems import LEVEL1, LEVEL2, UNSUPPORTED

RESULTS = Path(__file__).parent / "results"
WINDOWS = {"default": {}, "small": {"min_flops": 2**16, "max_flops": 2**22}}


def chi_square_p(statistic: float, df: int) -> float:
    """P(X >= statistic) for X ~ chi-square(df), by the Wilson-Hilferty normal approximation."""
    z = ((statistic / df) ** (1 / 3) - (1 - 2 / (9 * df))) / math.sqrt(2 / (9 * df))
    return 0.5 * math.erfc(z / math.sqrt(2))


def row_spec(row: int | str, seed: int, window: str, **fields) -> GenerationSpec:
    """A row is a level (2) or a drawn operator count ("num_ops 20")."""
    size = {"num_ops": int(row.split()[1])} if isinstance(row, str) else {"level": row}
    return GenerationSpec(**size, seed=seed, **WINDOWS[window], **fields)


def draws(row: int | str, seed: int, window: str, count: int) -> list[list[str]]:
    spec = row_spec(row, seed, window)
    return [[op.name for op in combination(spec, index, 0)] for index in range(count)]


def bounds(row: int | str, seed: int, window: str, pool: list[str]) -> dict:
    """The least uneven shares of uniform this window allows: with h of n operators able to
    reach the floor alone and k per program, n/(h*k) for them and (k-1)/k * n/(n-h) for the
    rest when h < n/k; 1 and 1 otherwise."""
    spec = row_spec(row, seed, window)
    carriers, _ = draw_weights(tuple(pool), spec.op_count, reach_key(spec))
    n, h, k = len(pool), len(carriers), spec.op_count
    tight = 0 < h < n and h * k < n
    return {"carriers": h, "bound_carrier": round(n / (h * k), 3) if tight else 1.0,
            "bound_other": round((k - 1) / k * n / (n - h), 3) if tight else 1.0}


def solved(row: int | str, seed: int, window: str, count: int) -> list[list[str]]:
    """The operators of the first attempt that solves, per index (validation off): the mix
    after the solver's rejections and the redraws they cause."""
    spec = row_spec(row, seed, window, validate=False)
    lists = []
    for index in range(count):
        for attempt in range(MAX_ATTEMPTS):
            candidate = solve_attempt(spec, index, attempt)
            if isinstance(candidate, Candidate):
                lists.append(candidate.fields["ops"])
                break
    return lists


def frequencies(lists: list[list[str]], pool: list[str]) -> dict:
    counts = collections.Counter(name for ops in lists for name in ops)
    total = sum(counts.values())
    expected = total / len(pool)
    chi2 = sum((counts[name] - expected) ** 2 / expected for name in pool)
    positions = {"first": collections.Counter(ops[0] for ops in lists),
                 "middle": collections.Counter(name for ops in lists for name in ops[1:-1]),
                 "last": collections.Counter(ops[-1] for ops in lists)}
    return {"draws": len(lists), "operators": total, "expected_per_operator": round(expected, 2),
            "min_ratio": round(min(counts[n] for n in pool) / expected, 3),
            "max_ratio": round(max(counts[n] for n in pool) / expected, 3),
            "rarest": min(pool, key=lambda n: counts[n]), "commonest": max(pool, key=lambda n: counts[n]),
            "chi_square": round(chi2, 1), "df": len(pool) - 1, "p_uniform": chi_square_p(chi2, len(pool) - 1),
            "never_first": sorted(n for n in pool if not positions["first"][n]),
            "never_last": sorted(n for n in pool if not positions["last"][n]),
            "counts": {n: counts[n] for n in pool},
            "positions": {k: {n: c[n] for n in pool} for k, c in positions.items()}}


def nesting(by_level: dict[int, list[list[str]]]) -> dict[str, float]:
    """Share of indices whose next level's operator list starts with this level's."""
    levels = sorted(by_level)
    return {f"{a}->{b}": sum(big[:len(small)] == small for small, big in zip(by_level[a], by_level[b]))
            / len(by_level[a]) for a, b in zip(levels, levels[1:])}


def level1_pairs(seed: int, window: str, pool: list[str]) -> dict:
    n = len(pool)
    walk = draws(1, seed, window, n * n)
    first80 = collections.Counter(ops[0] for ops in walk[:80])
    name, most = first80.most_common(1)[0]
    return {"pool": n, "pairs_in_first_n2": len({tuple(ops) for ops in walk}), "n2": n * n,
            "first80_commonest_first": name, "first80_commonest_first_count": most,
            "first80_distinct_first": len(first80)}


def kernelbench_share(fmt: str, device: str = "cpu") -> dict:
    """Per level, the share of problems whose chain validates inside the small window."""
    report = {}
    for level, table in (("1", LEVEL1), ("2", LEVEL2)):
        failed = {name: f"unsupported: {why}" for name, why in UNSUPPORTED.items() if level == "1"}
        for name, chain in table.items():
            spec = GenerationSpec(op_sequence=list(chain), format=fmt, **WINDOWS["small"])
            try:
                if generate(spec, 0, device=device).flops_window_relaxed:
                    failed[name] = "outside the window"
            except GenerationError as exc:
                failed[name] = str(exc)[-300:]
        problems = len(table) + (len(UNSUPPORTED) if level == "1" else 0)
        report[level] = {"problems": problems, "validated": problems - len(failed),
                         "share": round(1 - len(failed) / problems, 3), "failed": failed}
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.coverage", description=__doc__.splitlines()[0])
    p.add_argument("--levels", type=int, nargs="+", default=[2, 3, 4])
    p.add_argument("--num_ops", type=int, nargs="*", default=[], help="also rows of this many drawn operators")
    p.add_argument("--windows", nargs="+", default=list(WINDOWS), choices=list(WINDOWS))
    p.add_argument("--draws", type=int, default=6000, help="indices per level and window")
    p.add_argument("--seed", type=int, default=777)
    p.add_argument("--solved", action="store_true",
                   help="count the operators of solved samples (slow: CP-SAT per index) instead of first draws")
    p.add_argument("--kernelbench", choices=["fused_operator", "kernelbench"],
                   help="also validate every KernelBench problem's chain in this format (slow)")
    p.add_argument("--device", default="cpu", help="where --kernelbench validates (cpu, cuda)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)

    pool = GenerationSpec(level=2).pool()
    report: dict = {"date": datetime.date.today().isoformat(), "args": {k: str(v) for k, v in vars(args).items()},
                    "pool": len(pool), "windows": {}}
    for window in args.windows:
        sample = solved if args.solved else draws
        by_level = {level: sample(level, args.seed, window, args.draws) for level in args.levels}
        rows = {**by_level, **{f"num_ops {k}": sample(f"num_ops {k}", args.seed, window, args.draws)
                               for k in args.num_ops}}
        result = {"levels": {row: frequencies(lists, pool) | bounds(row, args.seed, window, pool)
                             for row, lists in rows.items()},
                  "nesting": nesting(by_level), "level1": level1_pairs(args.seed, window, pool)}
        report["windows"][window] = result
        for row, f in result["levels"].items():
            name = f"level {row}" if isinstance(row, int) else row
            print(f"{window:>7} {name}: {f['draws']} draws, share of uniform {f['min_ratio']:.2f} "
                  f"({f['rarest']}) .. {f['max_ratio']:.2f} ({f['commonest']}), chi-square {f['chi_square']} "
                  f"on {f['df']} df (p {f['p_uniform']:.2g}); never first {len(f['never_first'])}, "
                  f"never last {len(f['never_last'])}; least uneven possible {f['bound_other']:.2f} .. "
                  f"{f['bound_carrier']:.2f} ({f['carriers']} carriers)")
        print(f"{window:>7} nesting (next level starts with this one): "
              + ", ".join(f"{k} {v:.2f}" for k, v in result["nesting"].items()))
        l1 = result["level1"]
        print(f"{window:>7} level 1: {l1['pairs_in_first_n2']} of {l1['n2']} ordered pairs in the first "
              f"{l1['n2']} indices; first 80 indices: {l1['first80_distinct_first']} distinct first operators, "
              f"{l1['first80_commonest_first_count']} start with {l1['first80_commonest_first']}")
    if args.kernelbench:
        report["kernelbench"] = kernelbench_share(args.kernelbench, args.device)
        for level, r in report["kernelbench"].items():
            print(f"KernelBench level {level} ({args.kernelbench}, {args.device}): {r['validated']} of "
                  f"{r['problems']} chains validate inside 2**16..2**22 ({r['share']:.0%})"
                  + "".join(f"\n  {name}: {why}" for name, why in r["failed"].items()))
    out = args.out or RESULTS / f"coverage-{report['date']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1) + "\n")
    print(f"written to {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
